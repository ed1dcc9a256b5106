// LaserKvSequenceCache: the block loop (laser_kv.md §4.3), the end of prefill
// (§4.4) and decode (§4.5). Selection: laser_kv_select.cc; report:
// laser_kv_report.cc.
#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/dense/paged_dense.h"
#include "kernels/dense/dense_decode.h"
#include "engine/kv/laser_kv/laser_kv_ops.h"
#include "engine/kv/laser_kv/laser_kv_select.h"
#include "engine/kv/laser_kv/laser_kv_strategy.h"
#include "engine/status_macros.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#endif

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

at::Tensor UploadInt(const std::vector<int32_t>& v, c10::Device device) {
  at::Tensor h = at::empty({static_cast<int64_t>(std::max<size_t>(v.size(), 1))}, at::kInt);
  std::copy(v.begin(), v.end(), h.mutable_data_ptr<int32_t>());
  return h.to(device);
}

// Layer `l` of a [Ly, Hkv, cap, D] buffer as a K1/K2 segment of `len` rows.
LaserSegment LayerSegment(const at::Tensor& t, int64_t l, int64_t len) {
  LaserSegment s;
  if (!t.defined() || len == 0) return s;
  s.k = static_cast<const char*>(t.const_data_ptr()) + l * t.stride(0) * t.element_size();
  s.len = static_cast<int>(len);
  s.stride_l = t.stride(0);
  s.stride_h = t.stride(1);
  s.stride_j = t.stride(2);
  return s;
}

// Rows [begin, begin + len) of one layer's [Hkv, N, D] keys (e.g. the
// attention's concatenated key list) as a K1 segment.
LaserSegment RowsSegment(const at::Tensor& t, int64_t begin, int64_t len) {
  LaserSegment s;
  s.k = static_cast<const char*>(t.const_data_ptr()) + begin * t.stride(1) * t.element_size();
  s.len = static_cast<int>(len);
  s.stride_h = t.stride(0);
  s.stride_j = t.stride(1);
  return s;
}

}  // namespace

LaserKvSequenceCache::LaserKvSequenceCache(const KvGeometry& g, const LaserKvConfig& c, int64_t max_tokens)
    : geometry_(g), config_(c), max_tokens_(max_tokens) {
  static std::atomic<uint64_t> next_id{1};
  id_ = next_id.fetch_add(1);
}

const LaserBudget& LaserKvSequenceCache::BudgetFor(int64_t prompt_len) const {
  if (!budget_.has_value()) budget_ = ComputeLaserBudget(config_, prompt_len);
  return *budget_;
}

std::optional<PrefillPlan> LaserKvSequenceCache::NextPrefill(int64_t prompt_done, int64_t prompt_len) const {
  const LaserBudget& b = BudgetFor(prompt_len);
  if (b.dense) return std::nullopt;  // plain chunks of PrefillChunk()
  PrefillPlan p;
  if (prompt_done < b.S) {  // block i: b_i tokens + the query as a probe at S.. (§6.2)
    p.n_tokens = std::min(config_.block_size, b.S - prompt_done);
    p.n_probe = b.q;
    p.probe_start = b.S;
  } else {  // the query for real (§4.4)
    p.n_tokens = prompt_len - prompt_done;
  }
  return p;
}

void LaserKvSequenceCache::NotePeak(int64_t extra) { peak_bytes_ = std::max(peak_bytes_, BytesHeld() + extra); }

int64_t LaserKvSequenceCache::BytesHeld() const {
  return Bytes(ck_) + Bytes(cv_) + Bytes(tk_) + Bytes(tv_) + Bytes(bk_) + Bytes(bv_) + Bytes(probe_keys_) +
         Bytes(scores_) + Bytes(projection_) + static_cast<int64_t>(4 * (c_pos_.size() + t_pos_.size()));
}

at::Tensor LaserKvSequenceCache::layer_keys(int64_t layer) const { return ck_[layer].narrow(1, 0, c_len_); }
at::Tensor LaserKvSequenceCache::layer_values(int64_t layer) const { return cv_[layer].narrow(1, 0, c_len_); }

void LaserKvSequenceCache::EnsureCapacity(int64_t tokens) {
  const int64_t have = ck_.defined() ? ck_.size(2) : 0;
  if (tokens <= have) return;
  int64_t cap = std::max(tokens, have + have / 2);
  if (max_tokens_ > 0) cap = std::max(tokens, std::min(cap, max_tokens_));
  const auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
  at::Tensor k = at::empty({geometry_.n_layers, geometry_.n_kv_heads, cap, geometry_.head_dim}, opts);
  at::Tensor v = at::empty_like(k);
  if (c_len_ > 0) {
    k.narrow(2, 0, c_len_).copy_(ck_.narrow(2, 0, c_len_));
    v.narrow(2, 0, c_len_).copy_(cv_.narrow(2, 0, c_len_));
  }
  NotePeak(Bytes(k) + Bytes(v));  // both copies alive for the copy
  ck_ = std::move(k);
  cv_ = std::move(v);
}

absl::StatusOr<at::Tensor> LaserKvSequenceCache::Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                         const at::Tensor& v, const SeqStep& seq,
                                                         const StepContext& ctx) {
  if (ctx.decode_prepared) return PreparedDecode(layer, q, k, v, seq, ctx);
  if (seq.n_probe > 0) return BlockForward(layer, q, k, v, seq);
  return AppendForward(layer, q, k, v, seq);
}

// The query pass, decode, and dense fallback: append to C and attend.
absl::StatusOr<at::Tensor> LaserKvSequenceCache::AppendForward(int64_t layer, const at::Tensor& q,
                                                               const at::Tensor& k, const at::Tensor& v,
                                                               const SeqStep& seq) {
  const int64_t n = seq.n_new;
  if (layer == 0) {
    EnsureCapacity(c_len_ + n);
  }
  at::Tensor out;
  if (n == 1 && geometry_.device.is_cuda() &&
      DenseDecodeSupports(static_cast<int>(geometry_.head_dim), KvDTypeOf(geometry_.dtype))) {
    // The length goes up once per step (layer 0).
    if (layer == 0 || !decode_meta_.defined()) {
      decode_meta_ = DecodeMetaHost().to(geometry_.device, /*non_blocking=*/true);
    }
    KV_ASSIGN_OR_RETURN(out, DecodeOnDevice(layer, q, k, v, decode_meta_));  // appends k/v at row c_len
  } else {
    ck_[layer].narrow(1, c_len_, n).copy_(k);
    cv_[layer].narrow(1, c_len_, n).copy_(v);
    out = CausalGqaAttention(q, ck_[layer].narrow(1, 0, c_len_ + n), cv_[layer].narrow(1, 0, c_len_ + n), c_len_);
  }
  if (layer + 1 == geometry_.n_layers) {
    for (int64_t j = 0; j < n; ++j) c_pos_.push_back(static_cast<int32_t>(seq.start_pos + j));
    c_len_ += n;
  }
  return out;
}

// Decode on the GPU (§4.5): the compacted cache is exact attention state, so
// the dense decode kernel reads it as one page per layer: layer l's
// [Hkv, cap, D] slab is page 0 of a pool with page size cap (the kernel's
// [NB, Hkv, P, D] layout with NB = 1), block table meta[0] = {0}, live length
// meta[1] = c_len + 1 (device). The kernel's fused append stores k/v
// [Hkv, 1, D] at row c_len, and splits are planned on the capacity, so
// eager and prepared (graph) steps run the same launch.
at::Tensor LaserKvSequenceCache::DecodeMetaHost() const {
  // A fresh pinned buffer each time: the caching host allocator keeps it
  // until the copy that reads it has run, so a later step cannot overwrite it.
  at::Tensor host = at::empty({2}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  host.mutable_data_ptr<int32_t>()[0] = 0;                                  // block table {0}
  host.mutable_data_ptr<int32_t>()[1] = static_cast<int32_t>(c_len_ + 1);  // seq_lens {c_len + 1}
  return host;
}

absl::StatusOr<at::Tensor> LaserKvSequenceCache::DecodeOnDevice(int64_t layer, const at::Tensor& q,
                                                                const at::Tensor& k, const at::Tensor& v,
                                                                const at::Tensor& meta) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  const int64_t H = geometry_.n_heads, Hkv = geometry_.n_kv_heads, D = geometry_.head_dim, cap = ck_.size(2);
  const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();  // [H|Hkv, 1, D]
  at::Tensor out = at::empty({H, 1, D}, q.options());
  DenseDecodeParams p;
  p.q = qc.const_data_ptr();
  p.q_stride_b = H * D;
  p.q_stride_h = D;
  p.k_pool = static_cast<char*>(ck_.mutable_data_ptr()) + layer * ck_.stride(0) * ck_.element_size();
  p.v_pool = static_cast<char*>(cv_.mutable_data_ptr()) + layer * cv_.stride(0) * cv_.element_size();
  p.block_table = meta.const_data_ptr<int32_t>();
  p.seq_lens = meta.const_data_ptr<int32_t>() + 1;
  p.k_new = kc.const_data_ptr();
  p.v_new = vc.const_data_ptr();
  p.new_stride_b = Hkv * D;
  p.out = out.mutable_data_ptr();
  p.out_stride_b = H * D;
  p.out_stride_h = D;
  p.batch = 1;
  p.num_heads = static_cast<int>(H);
  p.num_kv_heads = static_cast<int>(Hkv);
  p.head_dim = static_cast<int>(D);
  p.page_size = static_cast<int>(cap);
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  p.max_seq_len = static_cast<int>(cap);  // a bound a graph can keep; the live length is meta[1]
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.dtype = KvDTypeOf(geometry_.dtype);
  if (!wave_) wave_ = CurrentDenseDecodeWave();  // the dense strategy's wave (half or full, by DRAM speed)
  p.num_splits = PlanDenseDecodeSplits(1, p.num_heads, p.num_kv_heads, p.max_seq_len, wave_->num_sms,
                                       wave_->split_ctas_per_sm);
  at::Tensor part;
  if (p.num_splits > 1) {
    part = at::empty({H * p.num_splits * (D + 1)}, q.options().dtype(at::kFloat));
    p.partial_out = part.mutable_data_ptr<float>();
    p.partial_lse = p.partial_out + H * p.num_splits * D;
  }
  if (const char* why = DenseDecodeValidate(p)) {
    return absl::InternalError(absl::StrCat("laser_kv decode (layer ", layer, "): ", why));
  }
  if (cudaError_t e = LaunchDenseDecode(p, at::cuda::getCurrentCUDAStream()); e != cudaSuccess) {
    return absl::InternalError(absl::StrCat("laser_kv decode (layer ", layer, "): ", cudaGetErrorString(e)));
  }
  return out;
#else
  (void)layer, (void)q, (void)k, (void)v, (void)meta;
  return absl::FailedPreconditionError("laser_kv: CUDA tensors in a build without CUDA");
#endif
}

// Block step (§4.3 step 2): stage the block, attend over past + block + probe,
// add the layer's window scores (K1, step 4).
absl::StatusOr<at::Tensor> LaserKvSequenceCache::BlockForward(int64_t layer, const at::Tensor& q,
                                                              const at::Tensor& k, const at::Tensor& v,
                                                              const SeqStep& seq) {
  if (!budget_.has_value() || budget_->dense) return absl::InternalError("laser_kv: probe step without a budget");
  const LaserBudget& b = *budget_;
  const int64_t nb = seq.n_new, nq = seq.n_probe, Hkv = geometry_.n_kv_heads, D = geometry_.head_dim;
  const bool accumulate = config_.mode == LaserMode::kAccumulate;
  if (layer == 0) {
    if (nq != b.q || seq.probe_start_pos != b.S || seq.start_pos % config_.block_size != 0 ||
        seq.start_pos + nb > b.S) {
      return absl::InternalError(absl::StrCat("laser_kv: block step [", seq.start_pos, ", +", nb, ") probe ",
                                              nq, "@", seq.probe_start_pos, " does not match S=", b.S, " q=", b.q));
    }
    if (accumulate && !config_.boundary_smoothing) {  // the previous tail is dropped (header)
      tk_ = at::Tensor();
      tv_ = at::Tensor();
      t_pos_.clear();
    }
    const auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
    if (!bk_.defined() || bk_.size(2) != nb) {
      bk_ = at::empty({geometry_.n_layers, Hkv, nb, D}, opts);
      bv_ = at::empty_like(bk_);
    }
    b_len_ = nb;
    b_start_ = seq.start_pos;
    probe_keys_ = at::empty({Hkv, nq, D}, opts);
    // Sink rows (header "Anchors in the score window"): C's entries at
    // positions < A, the first rows of C (C is in position order).
    sink_len_ = 0;
    if (accumulate) {
      while (sink_len_ < c_len_ && c_pos_[static_cast<size_t>(sink_len_)] < b.A) ++sink_len_;
    }
    const int64_t wn = (accumulate ? sink_len_ + static_cast<int64_t>(t_pos_.size()) : c_len_) + nb;
    scores_ = at::zeros({wn}, opts.dtype(at::kFloat));
    // Transient K/V of one layer's probe rows live in the step's tensors.
    NotePeak(nq * 2 * Hkv * D * static_cast<int64_t>(c10::elementSize(geometry_.dtype)));
  }
  bk_[layer].copy_(k.narrow(1, 0, nb));
  bv_[layer].copy_(v.narrow(1, 0, nb));
  const int64_t t_len = static_cast<int64_t>(t_pos_.size());
  std::vector<at::Tensor> keys, values;
  if (c_len_ > 0) {
    keys.push_back(ck_[layer].narrow(1, 0, c_len_));
    values.push_back(cv_[layer].narrow(1, 0, c_len_));
  }
  if (t_len > 0) {
    keys.push_back(tk_[layer]);
    values.push_back(tv_[layer]);
  }
  keys.push_back(k);
  values.push_back(v);
  const at::Tensor all_keys = at::cat(keys, 1);  // [Hkv, |C| + |T| + b_i + q, D]
  at::Tensor out = CausalGqaAttention(q, all_keys, at::cat(values, 1), c_len_ + t_len);

  // K1: the probe's post-RoPE Q against the window (T or C, then the block).
  const auto t0 = Clock::now();
  at::Tensor qq = q.narrow(1, nb, nq);
  if (qq.stride(2) != 1) qq = qq.contiguous();
  LaserWindowScoresParams p;
  p.q = qq.const_data_ptr();
  p.q_stride_t = qq.stride(1);
  p.q_stride_h = qq.stride(0);
  if (accumulate && sink_len_ > 0) {
    // The anchors (C's first sink_len_ rows), then T ++ block: contiguous rows
    // of the attention's key list from |C| on.
    p.seg[0] = LayerSegment(ck_, layer, sink_len_);
    p.seg[1] = RowsSegment(all_keys, c_len_, t_len + nb);
  } else {
    p.seg[0] = accumulate ? LayerSegment(tk_, layer, t_len) : LayerSegment(ck_, layer, c_len_);
    p.seg[1] = LayerSegment(bk_, layer, nb);
  }
  p.scores = scores_.mutable_data_ptr<float>();
  at::Tensor stats;
  if (geometry_.device.is_cuda()) {
    stats = at::empty({static_cast<int64_t>(LaserWindowScoresWorkspaceBytes(static_cast<int>(geometry_.n_heads),
                                                                             static_cast<int>(nq)) / 4 + 1)},
                      scores_.options());
    p.row_stats = stats.mutable_data_ptr<float>();
  }
  p.num_heads = static_cast<int>(geometry_.n_heads);
  p.num_kv_heads = static_cast<int>(Hkv);
  p.head_dim = static_cast<int>(D);
  p.num_query = static_cast<int>(nq);
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.dtype = KvDTypeOf(geometry_.dtype);
  KV_RETURN_IF_ERROR(LaserWindowScores(p, geometry_.device));
  if (layer + 1 == geometry_.n_layers) probe_keys_.copy_(k.narrow(1, nb, nq));
  scoring_ms_ += MsSince(t0);
  return out;
}

absl::Status LaserKvSequenceCache::EndStep(const SeqStep& seq, const StepContext&) {
  if (prepared_pending_) {  // the token a prepared step appended on the device
    c_pos_.push_back(static_cast<int32_t>(seq.start_pos));
    ++c_len_;
    prepared_pending_ = false;
  }
  tokens_seen_ += seq.n_new;
  if (seq.n_probe > 0) return CompactBlock(seq);
  NotePeak(0);
  return absl::OkStatus();
}

void LaserKvSequenceCache::SetSegments(LaserSegment seg[3], bool with_values) {
  const at::Tensor* ks[3] = {&ck_, &tk_, &bk_};
  const at::Tensor* vs[3] = {&cv_, &tv_, &bv_};
  const int64_t lens[3] = {c_len_, static_cast<int64_t>(t_pos_.size()), b_len_};
  for (int s = 0; s < 3; ++s) {
    seg[s] = LayerSegment(*ks[s], 0, lens[s]);
    if (with_values && seg[s].len > 0) seg[s].v = vs[s]->const_data_ptr();
  }
}

absl::Status LaserKvSequenceCache::Gather(const std::vector<int32_t>& rows, int64_t cap, at::Tensor* k,
                                          at::Tensor* v, std::vector<int32_t>* pos) {
  const int64_t M = static_cast<int64_t>(rows.size());
  const int64_t c_len = c_len_, t_len = static_cast<int64_t>(t_pos_.size());
  pos->clear();
  for (int32_t r : rows) {
    pos->push_back(r < c_len           ? c_pos_[r]
                   : r < c_len + t_len ? t_pos_[r - c_len]
                                       : static_cast<int32_t>(b_start_ + (r - c_len - t_len)));
  }
  const auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
  *k = at::empty({geometry_.n_layers, geometry_.n_kv_heads, std::max<int64_t>(cap, 1), geometry_.head_dim}, opts);
  *v = at::empty_like(*k);
  if (M == 0) return absl::OkStatus();
  std::vector<int32_t> bpos(static_cast<size_t>(b_len_));
  for (int64_t j = 0; j < b_len_; ++j) bpos[j] = static_cast<int32_t>(b_start_ + j);
  const at::Tensor cp = UploadInt(c_pos_, geometry_.device), tp = UploadInt(t_pos_, geometry_.device);
  const at::Tensor bp = UploadInt(bpos, geometry_.device), rows_d = UploadInt(rows, geometry_.device);
  LaserCompactParams p;
  SetSegments(p.seg, true);
  const at::Tensor* pp[3] = {&cp, &tp, &bp};
  for (int s = 0; s < 3; ++s) {
    if (p.seg[s].len > 0) p.seg[s].pos = pp[s]->const_data_ptr<int32_t>();
  }
  p.rows = rows_d.const_data_ptr<int32_t>();
  p.k_out = k->mutable_data_ptr();
  p.v_out = v->mutable_data_ptr();
  p.out_stride_l = k->stride(0);
  p.out_stride_h = k->stride(1);
  p.out_stride_j = k->stride(2);
  p.num_rows = static_cast<int>(M);
  p.num_layers = static_cast<int>(geometry_.n_layers);
  p.num_kv_heads = static_cast<int>(geometry_.n_kv_heads);
  p.head_dim = static_cast<int>(geometry_.head_dim);
  p.dtype = KvDTypeOf(geometry_.dtype);
  return LaserCompact(p, geometry_.device);
}

}  // namespace kvstream
