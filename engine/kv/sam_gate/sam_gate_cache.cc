#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "engine/status_macros.h"
#include "kernels/sam_gate/sam_gate.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

double NowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<int32_t> SamSelectGroups(double heads_fraction, const std::vector<double>& group_scores) {
  const int hk = static_cast<int>(group_scores.size());
  const int n_keep = SamKeepCount(heads_fraction, hk);
  std::vector<int32_t> order(hk);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return group_scores[a] > group_scores[b]; });
  order.resize(n_keep);
  std::sort(order.begin(), order.end());
  return order;
}

SamLayerPlan SamPlanLayer(const SamGateConfig& c, double f, const std::vector<double>& scores) {
  SamLayerPlan p;
  p.regime = c.calibrate ? SamRegime::kObstructed : c.Classify(f);
  const SamRegimeSettings s = c.Settings(p.regime);
  p.bits = c.StorageBits(p.regime);
  p.fake_quant_bits = c.FakeQuantBits(p.regime);
  p.window = s.window;
  p.sinks = c.num_sink_tokens;
  p.kept = SamSelectGroups(s.heads_fraction, scores);
  return p;
}

int64_t SamLayerRingBytes(const SamLayerPlan& p, int64_t head_dim, int64_t n_heads, int group_size) {
  const int n = static_cast<int>(p.kept.size());
  return SamRingKvBytes(n, p.Capacity(), static_cast<int>(head_dim), p.bits, group_size) +
         SamRingMetaBytes(n, p.Capacity()) + 4 * n_heads;
}

SamGateSequenceCache::SamGateSequenceCache(const SamGateConfig& c, const KvGeometry& g,
                                           const SamGateProfile* profile)
    : config_(c), geometry_(g), layers_(g.n_layers) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id.fetch_add(1);
  if (profile != nullptr && c.thresholds_from == SamThresholdSource::kProfile) {
    profile_name_ = std::filesystem::path(profile->path).filename().string();
  }
}

int64_t SamGateSequenceCache::StagingBytes() const {
  int64_t b = 0;
  for (const Layer& l : layers_) {
    if (l.stage_k.defined()) b += l.stage_k.nbytes() + l.stage_v.nbytes();
  }
  return b;
}

int64_t SamGateSequenceCache::RingBytes() const {
  int64_t b = 0;
  for (const Layer& l : layers_) {
    if (!l.built) continue;
    b += l.k_ring.nbytes() + l.v_ring.nbytes() + l.slot_pos.nbytes() + l.kept_groups.nbytes() +
         l.head_ring_group.nbytes();
  }
  return b;
}

int64_t SamGateSequenceCache::BytesHeld() const { return StagingBytes() + RingBytes(); }

absl::StatusOr<at::Tensor> SamGateSequenceCache::Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                         const at::Tensor& v, const SeqStep& seq,
                                                         const StepContext&) {
  if (layer < 0 || layer >= static_cast<int64_t>(layers_.size())) {
    return absl::InternalError(absl::StrCat("sam_gate: layer ", layer, " out of range"));
  }
  Layer& L = layers_[layer];
  if (seq.start_pos != L.seen) {
    return absl::InternalError(absl::StrCat("sam_gate layer ", layer, " has seen ", L.seen,
                                            " tokens but the step starts at ", seq.start_pos));
  }
  if (!L.built) {
    if (!seq.is_prompt) {
      return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": decode step before the prompt ended"));
    }
    return Prefill(layer, q, k, v, seq);
  }
  if (seq.is_prompt || q.size(1) != 1) {
    return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": ", q.size(1),
                                            " new tokens after the prompt (decode takes one per step)"));
  }
  return Decode(layer, q, k, v, seq);
}

absl::StatusOr<at::Tensor> SamGateSequenceCache::Prefill(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                         const at::Tensor& v, const SeqStep& seq) {
  Layer& L = layers_[layer];
  const int64_t n = q.size(1), past = L.seen, T = past + n;
  const int64_t have = L.stage_k.defined() ? L.stage_k.size(1) : 0;
  if (T > have) {
    // Exact size, so the staging never exceeds what PredictBytes counts for
    // the prompt (a chunked prompt re-copies its staging once per chunk; the
    // engine sends the whole prompt at once: PrefillChunk() = nullopt, C1).
    const int64_t cap = T;
    auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
    at::Tensor nk = at::empty({geometry_.n_kv_heads, cap, geometry_.head_dim}, opts);
    at::Tensor nv = at::empty({geometry_.n_kv_heads, cap, geometry_.head_dim}, opts);
    if (past > 0) {
      nk.narrow(1, 0, past).copy_(L.stage_k.narrow(1, 0, past));
      nv.narrow(1, 0, past).copy_(L.stage_v.narrow(1, 0, past));
    }
    L.stage_k = std::move(nk);
    L.stage_v = std::move(nv);
    peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  }
  // The last P queries, for the probe (C3).
  const int64_t P = config_.probe_window;
  at::Tensor qt = L.q_tail.defined() ? at::cat({L.q_tail, q}, 1) : q;
  L.q_tail = qt.narrow(1, std::max<int64_t>(0, qt.size(1) - P), std::min<int64_t>(P, qt.size(1))).clone();
  L.stage_k.narrow(1, past, n).copy_(k);
  L.stage_v.narrow(1, past, n).copy_(v);
  L.seen = T;
  // Exact causal attention over the staged prompt, the dense path's math (C1).
  at::Tensor out = CausalGqaAttention(q, L.stage_k.narrow(1, 0, T), L.stage_v.narrow(1, 0, T), past);
  if (seq.last_prompt_chunk) KV_RETURN_IF_ERROR(InitRing(layer));
  return out;
}

absl::Status SamGateSequenceCache::InitRing(int64_t layer) {
  const double t0 = NowMs();
  Layer& L = layers_[layer];
  const int64_t T = L.seen, Hk = geometry_.n_kv_heads, H = geometry_.n_heads, D = geometry_.head_dim, G = H / Hk;
  // §4 step 2: the probe over the last P prompt tokens (skipped if P < 8:
  // f stays NaN -> OBSTRUCTED, scores 0).
  const int64_t P = std::min<int64_t>(T, config_.probe_window);
  L.probe_skipped = P < kSamProbeMinWindow;
  L.f = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> scores(Hk, 0.0);
  if (!L.probe_skipped) {
    KV_RETURN_IF_ERROR(RunProbe(layer, P));
    for (int64_t h = 0; h < H; ++h) scores[h / G] += L.e[h];
  }
  L.q_tail = at::Tensor();
  L.proposed = config_.Classify(L.f);
  L.plan = SamPlanLayer(config_, L.f, scores);
  const SamLayerPlan& p = L.plan;
  const int n_l = static_cast<int>(p.kept.size()), C = p.Capacity();
  const int rb = SamRowBytes(static_cast<int>(D), p.bits, config_.quant_group_size);

  // Ring buffers (§3), allocated before the staging is freed (§4 step 5).
  auto dev = at::TensorOptions().device(geometry_.device);
  L.k_ring = at::zeros({int64_t(n_l) * C * rb}, dev.dtype(at::kByte));
  L.v_ring = at::zeros({int64_t(n_l) * C * rb}, dev.dtype(at::kByte));
  L.slot_pos = at::full({C}, -1, dev.dtype(at::kInt));
  std::vector<int32_t> hrg(H, -1);
  for (int j = 0; j < n_l; ++j) {
    for (int64_t h = p.kept[j] * G; h < (p.kept[j] + 1) * G; ++h) hrg[h] = j;
  }
  auto host_i32 = [&](const std::vector<int32_t>& x) {
    return at::from_blob(const_cast<int32_t*>(x.data()), {int64_t(x.size())}, at::kInt).clone().to(geometry_.device);
  };
  L.kept_groups = host_i32(p.kept);
  L.head_ring_group = host_i32(hrg);
  SamRingDesc& d = L.desc;
  d.k = L.k_ring.mutable_data_ptr<uint8_t>();
  d.v = L.v_ring.mutable_data_ptr<uint8_t>();
  d.slot_pos = L.slot_pos.mutable_data_ptr<int32_t>();
  d.kept_groups = L.kept_groups.const_data_ptr<int32_t>();
  d.head_ring_group = L.head_ring_group.const_data_ptr<int32_t>();
  d.num_kept = n_l;
  d.window = p.window;
  d.sinks = p.sinks;
  d.bits = p.bits;
  d.group_size = config_.quant_group_size;
  d.dropped_mode = config_.dropped_head_mode;
  // Checked on a copy pointing at the host vectors: the validator reads
  // kept_groups and head_ring_group, which are device pointers on CUDA.
  SamRingDesc host_view = d;
  host_view.kept_groups = p.kept.data();
  host_view.head_ring_group = hrg.data();
  if (const char* err = SamRingDescValidate(host_view, static_cast<int>(H), static_cast<int>(Hk), static_cast<int>(D))) {
    return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": ring descriptor: ", err));
  }
  if (geometry_.device.is_cuda()) {
    at::Tensor h = at::empty({int64_t(sizeof(SamRingDesc))}, at::kByte);
    std::memcpy(h.mutable_data_ptr<uint8_t>(), &d, sizeof(SamRingDesc));
    L.desc_dev = h.to(geometry_.device);
  }
  L.built = true;
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());

  // Write the kept rows of the whole prompt (kv_write skips non-resident
  // positions: §4 step 5 keeps [0, min(S,T)) and the last W).
  const int64_t first = std::max<int64_t>(0, T - p.window);
  std::vector<int32_t> pos_host;
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < std::min<int64_t>(p.sinks, T); ++i) rows.push_back(i);
  for (int64_t i = std::max<int64_t>(first, p.sinks); i < T; ++i) rows.push_back(i);
  for (int64_t r : rows) pos_host.push_back(static_cast<int32_t>(r));
  at::Tensor idx = at::from_blob(rows.data(), {int64_t(rows.size())}, at::kLong).clone().to(geometry_.device);
  at::Tensor kr = L.stage_k.narrow(1, 0, T).index_select(1, idx).transpose(0, 1).contiguous();  // [n, Hk, D]
  at::Tensor vr = L.stage_v.narrow(1, 0, T).index_select(1, idx).transpose(0, 1).contiguous();
  at::Tensor pos = host_i32(pos_host);
  std::vector<int32_t> len_host = {static_cast<int32_t>(T)};
  at::Tensor seq_len = host_i32(len_host);
  SamKvWriteParams w;
  w.k = kr.const_data_ptr();
  w.v = vr.const_data_ptr();
  w.pos = pos.const_data_ptr<int32_t>();
  w.seq_len = seq_len.const_data_ptr<int32_t>();
  w.rings = geometry_.device.is_cuda() ? reinterpret_cast<const SamRingDesc*>(L.desc_dev.const_data_ptr<uint8_t>())
                                       : &L.desc;
  w.num_rows = static_cast<int>(rows.size());
  w.num_seqs = 1;
  w.num_kv_heads = static_cast<int>(Hk);
  w.head_dim = static_cast<int>(D);
  w.fake_quant_bits = p.fake_quant_bits;
  w.dtype = KvDTypeOf(geometry_.dtype);
  if (const char* err = SamKvWriteValidate(w)) {
    return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": kv_write: ", err));
  }
  if (geometry_.device.is_cuda()) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    if (cudaError_t e = LaunchSamKvWrite(w, stream); e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("sam_gate: LaunchSamKvWrite: ", cudaGetErrorString(e)));
    }
#else
    return absl::InternalError("sam_gate: CUDA tensors in a build without CUDA");
#endif
  } else if (!SamKvWriteRef(w)) {
    return absl::InternalError("sam_gate: SamKvWriteRef refused its params");
  }
  L.n_valid = std::min<int64_t>(T, C);
  // §4 step 6: the staging of this layer is no longer read.
  L.stage_k = at::Tensor();
  L.stage_v = at::Tensor();
  compression_ms_ += NowMs() - t0;
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> SamGateSequenceCache::Decode(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                        const at::Tensor& v, const SeqStep& seq) {
  Layer& L = layers_[layer];
  const int64_t t = seq.start_pos, H = geometry_.n_heads, Hk = geometry_.n_kv_heads, D = geometry_.head_dim;
  const bool cuda = geometry_.device.is_cuda();
  at::Tensor kc = k.contiguous(), vc = v.contiguous(), qc = q.contiguous();  // [Hk,1,D] = [1,Hk,D]
  at::Tensor out = at::empty({H, 1, D}, q.options());
  const SamRingDesc* rings =
      cuda ? reinterpret_cast<const SamRingDesc*>(L.desc_dev.const_data_ptr<uint8_t>()) : &L.desc;
  int32_t host_meta[2] = {static_cast<int32_t>(t), static_cast<int32_t>(t + 1)};
  at::Tensor meta = at::from_blob(host_meta, {2}, at::kInt).clone();
  if (cuda) meta = meta.to(geometry_.device);

  SamKvWriteParams w;
  w.k = kc.const_data_ptr();
  w.v = vc.const_data_ptr();
  w.pos = meta.const_data_ptr<int32_t>();
  w.seq_len = meta.const_data_ptr<int32_t>() + 1;
  w.rings = rings;
  w.num_rows = 1;
  w.num_seqs = 1;
  w.num_kv_heads = static_cast<int>(Hk);
  w.head_dim = static_cast<int>(D);
  w.fake_quant_bits = 0;  // compat mode: decode rows unquantized (§4)
  w.dtype = KvDTypeOf(geometry_.dtype);

  SamDecodeAttnParams a;
  a.rings = rings;
  a.q = qc.const_data_ptr();
  a.v_new = vc.const_data_ptr();
  a.out = out.mutable_data_ptr();
  a.num_seqs = 1;
  a.num_heads = static_cast<int>(H);
  a.num_kv_heads = static_cast<int>(Hk);
  a.head_dim = static_cast<int>(D);
  a.num_splits = 1;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  a.dtype = KvDTypeOf(geometry_.dtype);
  if (const char* err = SamKvWriteValidate(w)) {
    return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": kv_write: ", err));
  }
  if (cuda) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    at::Tensor ws;
    // Split-K over the ring when it is long enough to need it.
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, geometry_.device.index() < 0 ? 0 : geometry_.device.index());
    a.num_splits = PlanSamDecodeSplits(1, static_cast<int>(H), L.plan.Capacity(), sms);
    if (a.num_splits > 1) {
      const SplitKWorkspaceBytes wb = SamDecodeAttnWorkspace(1, static_cast<int>(H), a.num_splits, static_cast<int>(D));
      ws = at::empty({static_cast<int64_t>((wb.partial_out + wb.partial_lse + 3) / 4)}, at::TensorOptions().dtype(at::kFloat).device(geometry_.device));
      a.partial_out = ws.mutable_data_ptr<float>();
      a.partial_lse = a.partial_out + wb.partial_out / 4;
    }
    if (const char* err = SamDecodeAttnValidate(a)) {
      return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": decode_attn: ", err));
    }
    if (cudaError_t e = LaunchSamKvWrite(w, stream); e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("sam_gate: LaunchSamKvWrite: ", cudaGetErrorString(e)));
    }
    if (cudaError_t e = LaunchSamDecodeAttn(a, stream); e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("sam_gate: LaunchSamDecodeAttn: ", cudaGetErrorString(e)));
    }
#else
    return absl::InternalError("sam_gate: CUDA tensors in a build without CUDA");
#endif
  } else {
    if (const char* err = SamDecodeAttnValidate(a)) {
      return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": decode_attn: ", err));
    }
    if (!SamKvWriteRef(w)) return absl::InternalError("sam_gate: SamKvWriteRef refused its params");
    if (!SamDecodeAttnRef(a)) return absl::InternalError("sam_gate: SamDecodeAttnRef refused its params");
  }
  L.seen = t + 1;
  L.n_valid = std::min<int64_t>(t + 1, L.plan.Capacity());
  return out;
}

int SamGateSequenceCache::MaxCapacity() const {
  int c = 1;
  for (const Layer& l : layers_) c = std::max(c, l.plan.Capacity());
  return c;
}

absl::Status SamGateSequenceCache::AdvanceDecode(const SeqStep& seq) {
  if (seq.n_new != 1 || seq.is_prompt) {
    return absl::InternalError(absl::StrCat("sam_gate: a prepared decode step appends one token (got ", seq.n_new,
                                            seq.is_prompt ? " prompt tokens)" : " tokens)"));
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    if (!L.built || L.seen != seq.start_pos) {
      return absl::InternalError(absl::StrCat("sam_gate layer ", l, (L.built ? "" : " (ring not built)"),
                                              " has seen ", L.seen, " tokens but the decode step starts at ",
                                              seq.start_pos));
    }
  }
  for (Layer& L : layers_) {
    L.seen = seq.start_pos + 1;
    L.n_valid = std::min<int64_t>(L.seen, L.plan.Capacity());
  }
  return absl::OkStatus();
}

std::vector<int32_t> SamGateSequenceCache::SlotPositions(int64_t layer) const {
  const Layer& L = layers_[layer];
  if (!L.built) return {};
  at::Tensor s = L.slot_pos.to(at::kCPU).contiguous();
  return std::vector<int32_t>(s.const_data_ptr<int32_t>(), s.const_data_ptr<int32_t>() + s.numel());
}

}  // namespace kvstream
