// SpectralQuantSequenceCache: prefill, decode, compression and attention
// (spectral_quant.md §4.3, §4.4, §6.6, §6.7). Kernel calls live in
// sq_kernels.cc; the report in sq_report.cc.
#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
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

std::atomic<uint64_t> next_cache_id{1};

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
      recent_(c.RecentTokens(max_tokens)),
      layers_(g.n_layers),
      id_(next_cache_id.fetch_add(1)) {
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
    own_profile_->centered.resize(g.n_layers * g.n_kv_heads * 2);
    own_plan_ = std::make_unique<SqPlan>();
    own_plan_->config = c;
    own_plan_->centred_k = c.center_keys;
    own_plan_->centred_v = c.center_values;
    own_plan_->head_dim = g.head_dim;
    own_plan_->n_kv_heads = g.n_kv_heads;
    own_plan_->head_offset = g.tp_kv_head_begin;  // QJL matrices are seeded by the model's head
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
    for (int t = 0; t < 2; ++t) {
      own_profile_->at(layer, h, t) = one.at(0, h, t);
      own_profile_->at(layer, h, t, true) = one.at(0, h, t, true);
    }
  }
  own_profile_->n_tokens = std::max<uint64_t>(own_profile_->n_tokens, one.n_tokens);
  SqBuildLayerPlan(config_, *own_profile_, layer, own_plan_->centred_k, own_plan_->centred_v, &own_plan_->layers[layer]);
  own_layers_[layer] = std::make_unique<SqLayerDevice>(
      SqBuildLayerDevice(*own_plan_, *own_profile_, layer, geometry_.device));
  layers_[layer].dev = own_layers_[layer].get();
  return absl::OkStatus();
}

absl::Status SpectralQuantSequenceCache::ReserveRecords(int64_t layer, int64_t tokens) {
  Layer& L = layers_[layer];
  const int64_t have = L.k_rec.defined() ? L.k_rec.size(0) : 0;
  if (have >= tokens) return absl::OkStatus();
  // Sinks are never coded: the request's records are max_tokens - S.
  // Sinks and the last num_recent_tokens are never coded (mode a): the
  // request's records are max_tokens - S - R.
  const int64_t cap = GrowTo(
      have, tokens,
      max_tokens_ > 0 ? std::max<int64_t>(max_tokens_ - config_.num_sink_tokens - recent_, 0) : 0);
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
  const int64_t R = recent_;
  // Mode a: the recent window, R slots (fewer if the request is shorter),
  // bf16 on every device (the dense-equivalent dtype). Mode b: the tail of
  // generated tokens in the model's dtype.
  int64_t hint = max_tokens_ > 0 ? max_tokens_ - L.n_comp - L.n_sink : 0;
  if (R > 0) hint = max_tokens_ > 0 ? std::min<int64_t>(R, std::max<int64_t>(max_tokens_ - config_.num_sink_tokens, 1)) : R;
  // A window that outgrows a short request's slots (a request past its
  // max_tokens) takes all R: its entries keep their slots (sq_strategy.h),
  // so every old slot is copied, not the first n_dense.
  const int64_t cap = R > 0 && have > 0 ? R : GrowTo(have, tokens, hint);
  const int64_t used = R > 0 ? have : L.n_dense;
  auto opts = at::TensorOptions().dtype(R > 0 ? at::kBFloat16 : geometry_.dtype).device(geometry_.device);
  L.k_tail = Grow(L.k_tail, used, {cap, geometry_.n_kv_heads, geometry_.head_dim}, opts);
  L.v_tail = Grow(L.v_tail, used, {cap, geometry_.n_kv_heads, geometry_.head_dim}, opts);
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  return absl::OkStatus();
}

absl::Status SpectralQuantSequenceCache::Compress(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor* first_token) {
  const double t0 = NowMs();
  Layer& L = layers_[layer];
  const int64_t n = k.size(1);
  // Z = X V_t per head (§4.3 step 1): [Hkv, n, D] x [Hkv, D, D] -> [n, Hkv, D];
  // centred plans code X - mu (sq_config.h center_keys / center_values).
  at::Tensor kf = k.to(at::kFloat), vf = v.to(at::kFloat);
  if (L.dev->mu_k.defined()) kf = kf - L.dev->mu_k.unsqueeze(1);
  if (L.dev->mu_v.defined()) vf = vf - L.dev->mu_v.unsqueeze(1);
  at::Tensor zk = at::matmul(kf, L.dev->vk).transpose(0, 1).contiguous();
  at::Tensor zv = at::matmul(vf, L.dev->vv).transpose(0, 1).contiguous();
  SqCompressArgs a;
  a.zk = &zk;
  a.zv = &zv;
  a.dev = L.dev;
  a.tables = &tables_;
  a.k_rec = &L.k_rec;
  a.v_rec = &L.v_rec;
  a.r_norm = config_.use_qjl ? &L.r_norm : nullptr;
  a.signs = config_.use_qjl ? &L.signs : nullptr;
  a.first = first_token != nullptr ? 0 : L.n_comp;
  a.first_token = first_token;
  a.n_kv_heads = geometry_.n_kv_heads;
  a.head_dim = geometry_.head_dim;
  KV_RETURN_IF_ERROR(SqRunCompress(a));
  if (first_token == nullptr) L.n_comp += n;
  compression_ms_ += NowMs() - t0;
  return absl::OkStatus();
}

SqDenseSegment SpectralQuantSequenceCache::DenseSegment(int64_t layer, const at::Tensor& k, const at::Tensor& v,
                                                        int64_t pos0, bool positions) const {
  const Layer& L = layers_[layer];
  const c10::ScalarType dt = SqDenseDtype(geometry_);
  auto i32 = at::TensorOptions().dtype(at::kInt).device(geometry_.device);
  std::vector<at::Tensor> ks, vs, pos;
  if (L.n_sink > 0) {  // held centred, in dt (AppendSinks)
    ks.push_back(L.k_sink.narrow(0, 0, L.n_sink));
    vs.push_back(L.v_sink.narrow(0, 0, L.n_sink));
    if (positions) pos.push_back(at::arange(0, L.n_sink, i32));
  }
  if (k.defined() && k.size(0) > 0) {
    at::Tensor kc = k, vc = v;  // the same centring as the records (softmax-invariant, sq_config.h)
    if (L.dev->mu_k.defined()) kc = k.to(at::kFloat) - L.dev->mu_k;
    if (L.dev->mu_v.defined()) vc = v.to(at::kFloat) - L.dev->mu_v;
    ks.push_back(kc.to(dt));
    vs.push_back(vc.to(dt));
    if (positions) pos.push_back(at::arange(pos0, pos0 + k.size(0), i32));
  }
  SqDenseSegment d;
  if (ks.empty()) return d;
  d.k = (ks.size() == 1 ? ks[0] : at::cat(ks, 0)).contiguous();
  d.v = (vs.size() == 1 ? vs[0] : at::cat(vs, 0)).contiguous();
  if (!pos.empty()) d.pos = pos.size() == 1 ? pos[0] : at::cat(pos, 0);
  return d;
}

void SpectralQuantSequenceCache::AppendSinks(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  Layer& L = layers_[layer];
  const int64_t n = k.size(1);
  if (n == 0) return;
  if (!L.k_sink.defined()) {
    auto opts = at::TensorOptions().dtype(SqDenseDtype(geometry_)).device(geometry_.device);
    const int64_t S = config_.num_sink_tokens;
    L.k_sink = at::zeros({S, geometry_.n_kv_heads, geometry_.head_dim}, opts);
    L.v_sink = at::zeros({S, geometry_.n_kv_heads, geometry_.head_dim}, opts);
  }
  at::Tensor kc = k.transpose(0, 1), vc = v.transpose(0, 1);  // [n, Hkv, D]
  if (L.dev->mu_k.defined()) kc = kc.to(at::kFloat) - L.dev->mu_k;
  if (L.dev->mu_v.defined()) vc = vc.to(at::kFloat) - L.dev->mu_v;
  L.k_sink.narrow(0, L.n_sink, n).copy_(kc);
  L.v_sink.narrow(0, L.n_sink, n).copy_(vc);
  L.n_sink += n;
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
}

absl::Status SpectralQuantSequenceCache::PushRecent(int64_t layer, const at::Tensor& k, const at::Tensor& v) {
  Layer& L = layers_[layer];
  const int64_t m = k.size(1), R = recent_;
  if (m == 0) return absl::OkStatus();
  // Positions leave the window oldest first: the held window's head, then
  // the new rows' head, so records stay in position order.
  const int64_t out_old = std::min<int64_t>(L.n_dense, std::max<int64_t>(L.n_dense + m - R, 0));
  const int64_t out_new = std::max<int64_t>(m - R, 0);
  if (out_old + out_new > 0) KV_RETURN_IF_ERROR(ReserveRecords(layer, L.n_comp + out_old + out_new));
  if (out_old > 0) {
    at::Tensor ok, ov;
    WindowRows(layer, 0, out_old, &ok, &ov);
    KV_RETURN_IF_ERROR(Compress(layer, ok.transpose(0, 1), ov.transpose(0, 1)));
  }
  if (out_new > 0) KV_RETURN_IF_ERROR(Compress(layer, k.narrow(1, 0, out_new), v.narrow(1, 0, out_new)));
  // The kept entries stay in their slots (the ring's start moved with n_comp).
  const int64_t keep = L.n_dense - out_old, in = m - out_new;
  L.n_dense = keep;
  if (in == 0 && keep == 0) return absl::OkStatus();
  KV_RETURN_IF_ERROR(ReserveTail(layer, keep + in));
  if (in > 0) {
    WriteWindow(layer, keep, k.narrow(1, out_new, in).transpose(0, 1), v.narrow(1, out_new, in).transpose(0, 1));
  }
  L.n_dense = keep + in;
  return absl::OkStatus();
}

void SpectralQuantSequenceCache::WindowRows(int64_t layer, int64_t first, int64_t n, at::Tensor* k,
                                            at::Tensor* v) const {
  const Layer& L = layers_[layer];
  const int64_t R = recent_, s = (L.n_comp + first) % R, head = std::min(n, R - s);
  if (head == n) {
    *k = L.k_tail.narrow(0, s, n), *v = L.v_tail.narrow(0, s, n);
    return;
  }
  *k = at::cat({L.k_tail.narrow(0, s, head), L.k_tail.narrow(0, 0, n - head)});
  *v = at::cat({L.v_tail.narrow(0, s, head), L.v_tail.narrow(0, 0, n - head)});
}

void SpectralQuantSequenceCache::WriteWindow(int64_t layer, int64_t first, const at::Tensor& k, const at::Tensor& v) {
  Layer& L = layers_[layer];
  const int64_t n = k.size(0), R = recent_, s = (L.n_comp + first) % R, head = std::min(n, R - s);
  L.k_tail.narrow(0, s, head).copy_(k.narrow(0, 0, head));
  L.v_tail.narrow(0, s, head).copy_(v.narrow(0, 0, head));
  if (head < n) {
    L.k_tail.narrow(0, 0, n - head).copy_(k.narrow(0, head, n - head));
    L.v_tail.narrow(0, 0, n - head).copy_(v.narrow(0, head, n - head));
  }
}

absl::StatusOr<at::Tensor> SpectralQuantSequenceCache::Attend(int64_t layer, const at::Tensor& q, int64_t q_pos0,
                                                              const SqDenseSegment& d, const at::Tensor* live_keys) {
  const Layer& L = layers_[layer];
  const int64_t H = geometry_.n_heads, Hk = geometry_.n_kv_heads, D = geometry_.head_dim, G = H / Hk, n = q.size(1);
  // Rows (g, t) of each KV head's group as one [G * n, D] matrix, so each
  // product below is one batched GEMM over the KV heads (a broadcast matmul
  // would first expand the [Hkv, D, D] basis G times).
  at::Tensor qf = q.to(at::kFloat).reshape({Hk, G * n, D});
  // q' = V_K^T q per query head (§4.4): row vector q times V_K.
  at::Tensor q_rot = at::bmm(qf, L.dev->vk).reshape({H, n, D});
  at::Tensor q_sketch;
  if (config_.use_qjl) q_sketch = at::bmm(qf, L.dev->s_sem.transpose(1, 2)).reshape({H, n, D});
  at::Tensor q_raw = qf.reshape({H, n, D}).contiguous();
  auto i32 = at::TensorOptions().dtype(at::kInt).device(geometry_.device);
  at::Tensor q_pos;
  if (live_keys == nullptr) q_pos = at::arange(q_pos0, q_pos0 + n, i32);
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
  // Record j sits at position n_sink + j; K2 takes it as j (k_pos null),
  // which masks nothing more: every record precedes every query it meets.
  a.num_keys = L.n_comp;
  if (live_keys != nullptr) a.num_keys = L.k_rec.defined() ? L.k_rec.size(0) : 0, a.num_keys_live = live_keys;
  a.dense_k = d.k.defined() ? &d.k : nullptr;
  a.dense_v = d.k.defined() ? &d.v : nullptr;
  a.q_pos = q_pos.defined() ? &q_pos : nullptr;
  a.d_pos = d.pos.defined() ? &d.pos : nullptr;
  a.n_heads = H;
  a.n_kv_heads = Hk;
  a.head_dim = D;
  a.scale = 1.0f / std::sqrt(static_cast<float>(D));
  KV_ASSIGN_OR_RETURN(SqAttendOut o, SqRunAttend(a));
  // O = A_eig V_V^T + A_dense (§4.4), + mu_v for centred values (the
  // weights of the records and the dense segment sum to 1).
  at::Tensor out = at::bmm(o.a_eig.reshape({Hk, G * n, D}), L.dev->vv.transpose(1, 2));
  if (L.dev->mu_v.defined()) out.add_(L.dev->mu_v.view({Hk, 1, D}));
  if (o.a_dense.defined()) out.add_(o.a_dense.view({Hk, G * n, D}));
  return out.reshape({H, n, D}).to(q.scalar_type());
}

absl::StatusOr<at::Tensor> SpectralQuantSequenceCache::Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                               const at::Tensor& v, const SeqStep& seq,
                                                               const StepContext& ctx) {
  if (layer < 0 || layer >= static_cast<int64_t>(layers_.size())) {
    return absl::InternalError(absl::StrCat("spectral_quant: layer ", layer, " out of range"));
  }
  Layer& L = layers_[layer];
  const int64_t n = k.size(1), held = L.n_sink + L.n_comp + L.n_dense;
  if (seq.start_pos != held || n != seq.n_new || seq.n_probe != 0) {
    return absl::InternalError(absl::StrCat("spectral_quant layer ", layer, " holds ", held,
                                            " tokens but the step starts at ", seq.start_pos, " with ", n, " rows"));
  }
  try {
    KV_RETURN_IF_ERROR(EnsureLayerPlan(layer, k, v));
    // The first num_sink_tokens positions are kept exact (sq_config.h); the
    // rest of the step is coded (or, in mode b, goes to the dense tail).
    const int64_t to_sink = std::min<int64_t>(std::max<int64_t>(config_.num_sink_tokens - L.n_sink, 0), n);
    const at::Tensor k_rest = k.narrow(1, to_sink, n - to_sink), v_rest = v.narrow(1, to_sink, n - to_sink);
    at::Tensor out;
    if (seq.is_prompt) {
      if (L.n_dense > 0 && recent_ == 0) {
        return absl::InternalError("spectral_quant: prompt tokens after the dense tail started");
      }
      // §6.6: exact over this chunk (dense segment, after the held sinks and
      // the recent window) + compressed earlier chunks, then the chunk is
      // kept (sinks, window) or compressed.
      SqDenseSegment d;
      if (L.n_dense > 0) {
        at::Tensor wk, wv;
        WindowRows(layer, 0, L.n_dense, &wk, &wv);
        const at::Tensor dk = at::cat({wk.to(at::kFloat), k.transpose(0, 1).to(at::kFloat)});
        const at::Tensor dv = at::cat({wv.to(at::kFloat), v.transpose(0, 1).to(at::kFloat)});
        d = DenseSegment(layer, dk, dv, L.n_sink + L.n_comp);
      } else {
        d = DenseSegment(layer, k.transpose(0, 1), v.transpose(0, 1), seq.start_pos);
      }
      KV_ASSIGN_OR_RETURN(out, Attend(layer, q, seq.start_pos, d));
      AppendSinks(layer, k.narrow(1, 0, to_sink), v.narrow(1, 0, to_sink));
      KV_RETURN_IF_ERROR(PushRecent(layer, k_rest, v_rest));
      if (seq.last_prompt_chunk && layer + 1 == static_cast<int64_t>(layers_.size())) prompt_done_ = true;
    } else if (ctx.decode_prepared || meta_pos_ == seq.start_pos || (layer == 0 && n == 1 && CanDecodeOnDevice())) {
      // Mode (a) with a full window on the GPU: device work only, the same
      // launches a captured graph replays (sq_prepared.cc). Layer 0 decides
      // for the step and, eagerly, does what PrepareDecode does before a
      // replay; the counts move in EndStep.
      if (meta_pos_ != seq.start_pos) {
        if (ctx.decode_prepared) {
          return absl::InternalError(
              absl::StrCat("spectral_quant: decode step at ", seq.start_pos, " was not prepared"));
        }
        KV_RETURN_IF_ERROR(PrepareDecodeStep(seq, ctx));
      }
      return DecodeOnDevice(layer, q, k, v);
    } else if (config_.compress_decode_tokens) {
      // Mode (a): the new token is compressed first (§4.5), or with a recent
      // window (sq_config.h) held exact while older ones leave it, then attended.
      AppendSinks(layer, k.narrow(1, 0, to_sink), v.narrow(1, 0, to_sink));
      KV_RETURN_IF_ERROR(PushRecent(layer, k_rest, v_rest));
      at::Tensor dk, dv;
      if (L.n_dense > 0) WindowRows(layer, 0, L.n_dense, &dk, &dv);
      KV_ASSIGN_OR_RETURN(out, Attend(layer, q, seq.start_pos, DenseSegment(layer, dk, dv, L.n_sink + L.n_comp)));
    } else {
      // Mode (b): generated tokens stay dense.
      AppendSinks(layer, k.narrow(1, 0, to_sink), v.narrow(1, 0, to_sink));
      if (n > to_sink) {
        KV_RETURN_IF_ERROR(ReserveTail(layer, L.n_dense + n - to_sink));
        L.k_tail.narrow(0, L.n_dense, n - to_sink).copy_(k_rest.transpose(0, 1));
        L.v_tail.narrow(0, L.n_dense, n - to_sink).copy_(v_rest.transpose(0, 1));
        L.n_dense += n - to_sink;
      }
      at::Tensor dk, dv;
      if (L.n_dense > 0) dk = L.k_tail.narrow(0, 0, L.n_dense), dv = L.v_tail.narrow(0, 0, L.n_dense);
      KV_ASSIGN_OR_RETURN(out, Attend(layer, q, seq.start_pos, DenseSegment(layer, dk, dv, L.n_sink + L.n_comp)));
    }
    if (layer == 0) tokens_seen_ = L.n_sink + L.n_comp + L.n_dense;
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
    for (const at::Tensor* t : {&L.k_rec, &L.v_rec, &L.r_norm, &L.signs, &L.k_tail, &L.v_tail, &L.k_sink, &L.v_sink}) {
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
  // X^ = Z^ V^T (+ mu when centred) per head: [Hkv, n, D].
  at::Tensor x = at::matmul(zhat.transpose(0, 1), basis.transpose(-1, -2));
  const at::Tensor& mu = type == 0 ? L.dev->mu_k : L.dev->mu_v;
  if (mu.defined()) x = x + mu.cpu().unsqueeze(1);
  return x;
}

}  // namespace kvstream
