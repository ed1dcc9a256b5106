// SpectralQuantSequenceCache: prefill, decode, compression and attention
// (spectral_quant.md §4.3, §4.4, §6.6, §6.7). Kernel calls live in
// sq_kernels.cc; the report in sq_report.cc.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_kernels.h"
#include "engine/kv/spectral_quant/sq_strategy.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Grown capacity: exactly `cap_hint` when the request's size is known (one
// allocation, the predicted bytes), else x1.5 rounded to 16 tokens.
int64_t GrowTo(int64_t have, int64_t need, int64_t cap_hint) {
  if (cap_hint >= need) return cap_hint;
  const int64_t g = std::max<int64_t>(need, have + have / 2);
  return (g + 15) / 16 * 16;
}

at::Tensor Grow(const at::Tensor& old, int64_t used, std::vector<int64_t> shape, const at::TensorOptions& opts) {
  at::Tensor t = at::zeros(shape, opts);
  if (old.defined() && used > 0) t.narrow(0, 0, used).copy_(old.narrow(0, 0, used));
  return t;
}

}  // namespace

SpectralQuantSequenceCache::SpectralQuantSequenceCache(const SpectralQuantConfig& c, const KvGeometry& g,
                                                       std::shared_ptr<const SqDevicePlan> dplan,
                                                       std::shared_ptr<const SqProfile> profile, bool plan_cache_hit,
                                                       int64_t max_tokens)
    : config_(c),
      geometry_(g),
      dplan_(std::move(dplan)),
      profile_(std::move(profile)),
      plan_cache_hit_(plan_cache_hit),
      max_tokens_(max_tokens),
      layers_(g.n_layers) {
  if (dplan_) {
    tables_ = dplan_->tables;
    for (int64_t l = 0; l < g.n_layers; ++l) layers_[l].dev = &dplan_->layers[l];
  } else {
    tables_ = SqUnitTables(g.device);
    own_profile_ = std::make_unique<SqProfile>();
    own_profile_->name = "default";
    own_profile_->n_layers = static_cast<int32_t>(g.n_layers);
    own_profile_->n_kv_heads = static_cast<int32_t>(g.n_kv_heads);
    own_profile_->head_dim = static_cast<int32_t>(g.head_dim);
    own_profile_->spectra.resize(g.n_layers * g.n_kv_heads * 2);
    own_plan_ = std::make_unique<SqPlan>();
    own_plan_->config = c;
    own_plan_->head_dim = g.head_dim;
    own_plan_->n_kv_heads = g.n_kv_heads;
    own_plan_->layers.resize(g.n_layers);
    own_layers_.resize(g.n_layers);
  }
}

absl::Status SpectralQuantSequenceCache::EnsureLayerPlan(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  if (layers_[layer].dev != nullptr) return absl::OkStatus();
  // Synthetic self-calibration from this first chunk (header comment).
  SqCovariance cov(1, geometry_.n_kv_heads, geometry_.head_dim, INT64_MAX);
  cov.Add(0, k, v);
  if (cov.tokens(0) < 2) {
    // One token: its own direction is the whole spectrum; Finish needs 2.
    cov.Add(0, k, v);
  }
  KV_ASSIGN_OR_RETURN(SqProfile one, cov.Finish("default", 0));
  for (int64_t h = 0; h < geometry_.n_kv_heads; ++h) {
    for (int t = 0; t < 2; ++t) own_profile_->at(layer, h, t) = one.at(0, h, t);
  }
  own_profile_->n_tokens = std::max<uint64_t>(own_profile_->n_tokens, one.n_tokens);
  SqLayerPlan& lp = own_plan_->layers[layer];
  const int D = static_cast<int>(geometry_.head_dim);
  lp.k.resize(geometry_.n_kv_heads);
  lp.v.resize(geometry_.n_kv_heads);
  lp.bits.resize(geometry_.n_kv_heads);
  for (int64_t h = 0; h < geometry_.n_kv_heads; ++h) {
    SqBuildHeadPlan(config_, own_profile_->at(layer, h, 0), own_profile_->at(layer, h, 1), D, &lp.k[h], &lp.v[h],
                    &lp.bits[h]);
    lp.words_k = std::max(lp.words_k, SqRecordWords(lp.k[h].bits));
    lp.words_v = std::max(lp.words_v, SqRecordWords(lp.v[h].bits));
  }
  own_layers_[layer] = std::make_unique<SqLayerDevice>(
      SqBuildLayerDevice(*own_plan_, *own_profile_, layer, geometry_.device));
  layers_[layer].dev = own_layers_[layer].get();
  return absl::OkStatus();
}

absl::Status SpectralQuantSequenceCache::ReserveRecords(int64_t layer, int64_t tokens) {
  Layer& L = layers_[layer];
  const int64_t have = L.k_rec.defined() ? L.k_rec.size(0) : 0;
  if (have >= tokens) return absl::OkStatus();
  const int64_t cap = GrowTo(have, tokens, max_tokens_);
  const int64_t H = geometry_.n_kv_heads;
  auto i32 = at::TensorOptions().dtype(at::kInt).device(geometry_.device);
  L.k_rec = Grow(L.k_rec, L.n_comp, {cap, H, L.dev->words_k}, i32);
  L.v_rec = Grow(L.v_rec, L.n_comp, {cap, H, L.dev->words_v}, i32);
  if (config_.use_qjl) {
    L.r_norm = Grow(L.r_norm, L.n_comp, {cap, H}, i32.dtype(at::kShort));
    L.signs = Grow(L.signs, L.n_comp, {cap, H, L.dev->sign_words}, i32);
  }
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  return absl::OkStatus();
}

absl::Status SpectralQuantSequenceCache::ReserveTail(int64_t layer, int64_t tokens) {
  Layer& L = layers_[layer];
  const int64_t have = L.k_tail.defined() ? L.k_tail.size(0) : 0;
  if (have >= tokens) return absl::OkStatus();
  const int64_t cap = GrowTo(have, tokens, max_tokens_ > 0 ? max_tokens_ - L.n_comp : 0);
  auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
  L.k_tail = Grow(L.k_tail, L.n_dense, {cap, geometry_.n_kv_heads, geometry_.head_dim}, opts);
  L.v_tail = Grow(L.v_tail, L.n_dense, {cap, geometry_.n_kv_heads, geometry_.head_dim}, opts);
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  return absl::OkStatus();
}

absl::Status SpectralQuantSequenceCache::Compress(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  const double t0 = NowMs();
  Layer& L = layers_[layer];
  const int64_t n = k.size(1);
  // Z = X V_t per head (§4.3 step 1): [Hkv, n, D] x [Hkv, D, D] -> [n, Hkv, D].
  at::Tensor zk = at::matmul(k.to(at::kFloat), L.dev->vk).transpose(0, 1).contiguous();
  at::Tensor zv = at::matmul(v.to(at::kFloat), L.dev->vv).transpose(0, 1).contiguous();
  SqCompressArgs a;
  a.zk = &zk;
  a.zv = &zv;
  a.dev = L.dev;
  a.tables = &tables_;
  a.k_rec = &L.k_rec;
  a.v_rec = &L.v_rec;
  a.r_norm = config_.use_qjl ? &L.r_norm : nullptr;
  a.signs = config_.use_qjl ? &L.signs : nullptr;
  a.first = L.n_comp;
  a.n_kv_heads = geometry_.n_kv_heads;
  a.head_dim = geometry_.head_dim;
  KV_RETURN_IF_ERROR(SqRunCompress(a));
  L.n_comp += n;
  compression_ms_ += NowMs() - t0;
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> SpectralQuantSequenceCache::Attend(int64_t layer, const at::Tensor& q, int64_t q_pos0,
                                                              const at::Tensor& dk, const at::Tensor& dv,
                                                              int64_t d_pos0) {
  const Layer& L = layers_[layer];
  const int64_t H = geometry_.n_heads, Hk = geometry_.n_kv_heads, D = geometry_.head_dim, G = H / Hk, n = q.size(1);
  at::Tensor qf = q.to(at::kFloat).reshape({Hk, G, n, D});
  // q' = V_K^T q per query head (§4.4): row vector q times V_K.
  at::Tensor q_rot = at::matmul(qf, L.dev->vk.unsqueeze(1)).reshape({H, n, D}).contiguous();
  at::Tensor q_sketch;
  if (config_.use_qjl) {
    q_sketch = at::matmul(qf, L.dev->s_sem.transpose(-1, -2).unsqueeze(1)).reshape({H, n, D}).contiguous();
  }
  at::Tensor q_raw = qf.reshape({H, n, D}).contiguous();
  auto i32 = at::TensorOptions().dtype(at::kInt).device(geometry_.device);
  at::Tensor q_pos = at::arange(q_pos0, q_pos0 + n, i32);
  at::Tensor d_pos;
  if (dk.defined()) d_pos = at::arange(d_pos0, d_pos0 + dk.size(0), i32);
  SqAttendArgs a;
  a.q_rot = &q_rot;
  a.q_sketch = config_.use_qjl ? &q_sketch : nullptr;
  a.q_raw = &q_raw;
  a.dev = L.dev;
  a.tables = &tables_;
  a.k_rec = &L.k_rec;
  a.v_rec = &L.v_rec;
  a.r_norm = config_.use_qjl ? &L.r_norm : nullptr;
  a.signs = config_.use_qjl ? &L.signs : nullptr;
  a.num_keys = L.n_comp;
  a.dense_k = dk.defined() ? &dk : nullptr;
  a.dense_v = dv.defined() ? &dv : nullptr;
  a.q_pos = &q_pos;
  a.d_pos = dk.defined() ? &d_pos : nullptr;
  a.n_heads = H;
  a.n_kv_heads = Hk;
  a.head_dim = D;
  a.scale = 1.0f / std::sqrt(static_cast<float>(D));
  KV_ASSIGN_OR_RETURN(SqAttendOut o, SqRunAttend(a));
  // O = A_eig V_V^T + A_dense (§4.4).
  at::Tensor out = at::matmul(o.a_eig.reshape({Hk, G, n, D}), L.dev->vv.transpose(-1, -2).unsqueeze(1)).reshape({H, n, D});
  if (o.a_dense.defined()) out = out + o.a_dense;
  return out.to(q.scalar_type());
}

absl::StatusOr<at::Tensor> SpectralQuantSequenceCache::Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                               const at::Tensor& v, const SeqStep& seq,
                                                               const StepContext&) {
  if (layer < 0 || layer >= static_cast<int64_t>(layers_.size())) {
    return absl::InternalError(absl::StrCat("spectral_quant: layer ", layer, " out of range"));
  }
  Layer& L = layers_[layer];
  const int64_t n = k.size(1);
  if (seq.start_pos != L.n_comp + L.n_dense || n != seq.n_new || seq.n_probe != 0) {
    return absl::InternalError(absl::StrCat("spectral_quant layer ", layer, " holds ", L.n_comp + L.n_dense,
                                            " tokens but the step starts at ", seq.start_pos, " with ", n, " rows"));
  }
  try {
    KV_RETURN_IF_ERROR(EnsureLayerPlan(layer, k, v));
    at::Tensor out;
    if (seq.is_prompt) {
      if (L.n_dense > 0) return absl::InternalError("spectral_quant: prompt tokens after the dense tail started");
      // §6.6: exact over this chunk (dense segment) + compressed earlier chunks.
      KV_RETURN_IF_ERROR(ReserveRecords(layer, L.n_comp + n));
      at::Tensor dk = k.transpose(0, 1).to(SqDenseDtype(geometry_)).contiguous();
      at::Tensor dv = v.transpose(0, 1).to(SqDenseDtype(geometry_)).contiguous();
      KV_ASSIGN_OR_RETURN(out, Attend(layer, q, seq.start_pos, dk, dv, seq.start_pos));
      KV_RETURN_IF_ERROR(Compress(layer, k, v));
    } else if (config_.compress_decode_tokens) {
      // Mode (a): the new token is compressed first, then attended (§4.5).
      KV_RETURN_IF_ERROR(ReserveRecords(layer, L.n_comp + n));
      KV_RETURN_IF_ERROR(Compress(layer, k, v));
      KV_ASSIGN_OR_RETURN(out, Attend(layer, q, seq.start_pos, at::Tensor(), at::Tensor(), 0));
    } else {
      // Mode (b): generated tokens stay dense.
      KV_RETURN_IF_ERROR(ReserveTail(layer, L.n_dense + n));
      L.k_tail.narrow(0, L.n_dense, n).copy_(k.transpose(0, 1));
      L.v_tail.narrow(0, L.n_dense, n).copy_(v.transpose(0, 1));
      L.n_dense += n;
      at::Tensor dk = L.k_tail.narrow(0, 0, L.n_dense), dv = L.v_tail.narrow(0, 0, L.n_dense);
      if (SqDenseDtype(geometry_) != geometry_.dtype) {
        dk = dk.to(SqDenseDtype(geometry_));
        dv = dv.to(SqDenseDtype(geometry_));
      }
      KV_ASSIGN_OR_RETURN(out, Attend(layer, q, seq.start_pos, dk, dv, L.n_comp));
    }
    if (layer == 0) tokens_seen_ = L.n_comp + L.n_dense;
    return out;
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("spectral_quant layer ", layer, ": ", e.what_without_backtrace()));
  }
}

int64_t SpectralQuantSequenceCache::OwnPlanBytes() const {
  int64_t b = 0;
  for (const auto& l : own_layers_) {
    if (l) b += l->bytes();
  }
  return b;
}

int64_t SpectralQuantSequenceCache::BytesHeld() const {
  int64_t b = OwnPlanBytes();
  for (const Layer& L : layers_) {
    for (const at::Tensor* t : {&L.k_rec, &L.v_rec, &L.r_norm, &L.signs, &L.k_tail, &L.v_tail}) {
      if (t->defined()) b += static_cast<int64_t>(t->nbytes());
    }
  }
  return b;
}

absl::StatusOr<at::Tensor> SpectralQuantSequenceCache::Reconstruct(int64_t layer, int type) const {
  const Layer& L = layers_[layer];
  if (L.dev == nullptr || L.n_comp == 0) return at::empty({geometry_.n_kv_heads, 0, geometry_.head_dim});
  KV_ASSIGN_OR_RETURN(at::Tensor zhat, SqRunDequantHost(*L.dev, type, type == 0 ? L.k_rec : L.v_rec, L.n_comp,
                                                        geometry_.n_kv_heads, geometry_.head_dim));
  at::Tensor basis = (type == 0 ? L.dev->vk : L.dev->vv).cpu();  // [Hkv, D, D]
  // X^ = Z^ V^T per head: [Hkv, n, D].
  return at::matmul(zhat.transpose(0, 1), basis.transpose(-1, -2));
}

}  // namespace kvstream
