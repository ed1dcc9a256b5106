// SAM-Gate decode over the whole strategy group (sam_gate.md §4 decode,
// C15): one sam_decode_attn launch per layer for every decode sequence of
// the step, each row reading its own ring descriptor and appending its new
// row (the fused append: sam_kv_write's work for one row per sequence, in
// the same launch; sam_decode_attn.h).
// PrepareDecode does the step's host work up front into fixed buffers, so
// the per-layer work is device-only and a CUDA graph can replay it
// (engine/model/decode_graphs.h):
//   meta_       int32 [kMaxPreparedRows]: pos[r], the new row's position
//               (-1 on padded rows: the fused append skips them)
//   desc_table_ [L][kMaxPreparedRows] SamRingDesc: row r's ring at layer l;
//               rings are fixed for a request's life, so the table is only
//               rewritten when the set of sequences changes. Padded rows
//               get a ring whose query heads are all dropped with ZERO
//               output, so they read nothing and write nothing.
// The graph key is the split count and the workspace generation (the
// workspace is reallocated only when a larger split plan needs it).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "engine/status_macros.h"
#include "kernels/sam_gate/sam_gate.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

constexpr int64_t kRows = SamGateStrategy::kMaxPreparedRows;

absl::Status KernelError(const char* what, const char* why) {
  return absl::InternalError(absl::StrCat("sam_gate prepared decode: ", what, ": ", why ? why : "refused"));
}

// Packed heads (stride(1) == D, stride(2) == 1): what the kernels read with a
// row stride; anything else is made contiguous.
bool HeadsPacked(const at::Tensor& x) { return x.stride(2) == 1 && x.stride(1) == x.size(2); }

}  // namespace

absl::Status SamGateStrategy::EnsureDecodeBuffers() {
  if (meta_.defined()) return absl::OkStatus();
  auto dev = at::TensorOptions().device(geometry_.device);
  const int64_t D = geometry_.head_dim, H = geometry_.n_heads;
  meta_ = at::zeros({kRows}, dev.dtype(at::kInt));
  desc_table_ = at::zeros({geometry_.n_layers * kRows * static_cast<int64_t>(sizeof(SamRingDesc))},
                          dev.dtype(at::kByte));
  pad_k_ = at::zeros({2 * D}, dev.dtype(at::kByte));
  pad_v_ = at::zeros({2 * D}, dev.dtype(at::kByte));
  pad_slot_pos_ = at::full({1}, -1, dev.dtype(at::kInt));
  pad_kept_ = at::zeros({1}, dev.dtype(at::kInt));
  pad_hrg_ = at::full({H}, -1, dev.dtype(at::kInt));
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (geometry_.device.is_cuda()) num_sms_ = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
#endif
  return absl::OkStatus();
}

absl::StatusOr<int64_t> SamGateStrategy::PrepareDecode(absl::Span<SequenceCache* const> seqs,
                                                       absl::Span<const SeqStep> steps, int64_t padded_rows,
                                                       const StepContext& ctx) {
  const int64_t B = static_cast<int64_t>(seqs.size());
  if (B < 1 || padded_rows < B || padded_rows > kRows || static_cast<int64_t>(steps.size()) != B) {
    return absl::InternalError(
        absl::StrCat("sam_gate PrepareDecode: ", B, " rows padded to ", padded_rows, " (at most ", kRows, ")"));
  }
  KV_RETURN_IF_ERROR(EnsureDecodeBuffers());
  std::vector<SamGateSequenceCache*> caches(B);
  std::vector<uint64_t> ids;
  int max_capacity = 1;
  for (int64_t b = 0; b < B; ++b) {
    caches[b] = static_cast<SamGateSequenceCache*>(seqs[b]);
    ids.push_back(caches[b]->id());
    max_capacity = std::max(max_capacity, caches[b]->MaxCapacity());
  }
  ids.push_back(static_cast<uint64_t>(padded_rows));

  // Per-step values: the new rows' positions.
  std::vector<int32_t> meta(kRows, -1);
  for (int64_t r = 0; r < B; ++r) meta[r] = static_cast<int32_t>(steps[r].start_pos);
  // Descriptors: only when the set of sequences changed.
  if (ids != table_ids_) {
    const int64_t L = geometry_.n_layers;
    SamRingDesc pad;
    pad.k = pad_k_.mutable_data_ptr<uint8_t>();
    pad.v = pad_v_.mutable_data_ptr<uint8_t>();
    pad.slot_pos = pad_slot_pos_.mutable_data_ptr<int32_t>();
    pad.kept_groups = pad_kept_.const_data_ptr<int32_t>();
    pad.head_ring_group = pad_hrg_.const_data_ptr<int32_t>();
    pad.num_kept = 1;
    pad.window = 1;
    pad.sinks = 0;
    pad.bits = 16;
    pad.group_size = 32;
    pad.dropped_mode = SamDroppedHeadMode::kZero;
    std::vector<SamRingDesc> table(static_cast<size_t>(L * padded_rows), pad);
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t b = 0; b < B; ++b) table[l * padded_rows + b] = caches[b]->desc(l);
    }
    // Layer l's array starts at row l * kRows of the device table.
    at::Tensor host = at::from_blob(table.data(), {L, padded_rows * static_cast<int64_t>(sizeof(SamRingDesc))},
                                    at::kByte);
    desc_table_.view({L, kRows * static_cast<int64_t>(sizeof(SamRingDesc))})
        .narrow(1, 0, padded_rows * static_cast<int64_t>(sizeof(SamRingDesc)))
        .copy_(host);
    table_ids_ = ids;
  }
  meta_.copy_(at::from_blob(meta.data(), {kRows}, at::kInt));

  int splits = 1;
  if (geometry_.device.is_cuda()) {
    splits = PlanSamDecodeSplits(static_cast<int>(padded_rows), static_cast<int>(geometry_.n_heads), max_capacity,
                                 num_sms_);
  }
  if (splits > 1) {
    const SplitKWorkspaceBytes wb = SamDecodeAttnWorkspace(static_cast<int>(padded_rows),
                                                           static_cast<int>(geometry_.n_heads), splits,
                                                           static_cast<int>(geometry_.head_dim));
    const int64_t floats = static_cast<int64_t>((wb.partial_out + wb.partial_lse + 3) / 4);
    if (!workspace_.defined() || workspace_.numel() < floats) {
      workspace_ = at::empty({floats}, at::TensorOptions().dtype(at::kFloat).device(geometry_.device));
      ++workspace_generation_;  // graphs captured with the old one must not replay
    }
  }
  // Host bookkeeping of the step (all layers), done once here: the device
  // work may run twice (eager warm-up, then capture) or be replayed.
  for (int64_t b = 0; b < B; ++b) KV_RETURN_IF_ERROR(caches[b]->AdvanceDecode(steps[b]));
  prepared_step_ = ctx.step;
  prepared_rows_ = padded_rows;
  prepared_splits_ = splits;
  return workspace_generation_ * (kSamAttnMaxSplits + 1) + splits;
}

absl::Status SamGateStrategy::DecodePrepared(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, at::Tensor& out) {
  const int64_t R = prepared_rows_, H = geometry_.n_heads, Hk = geometry_.n_kv_heads, D = geometry_.head_dim;
  if (q.size(0) != R || k.size(0) != R || out.size(0) != R) {
    return absl::InternalError(absl::StrCat("sam_gate prepared decode: ", q.size(0), " rows, prepared ", R));
  }
  const bool kv_packed = HeadsPacked(k) && HeadsPacked(v) && k.stride(0) == v.stride(0);
  const at::Tensor kc = kv_packed ? k : k.contiguous();
  const at::Tensor vc = kv_packed ? v : v.contiguous();
  const at::Tensor qc = HeadsPacked(q) ? q : q.contiguous();
  const bool out_packed = HeadsPacked(out) && out.stride(0) == H * D;
  at::Tensor o = out_packed ? out : at::empty({R, H, D}, out.options());

  const SamRingDesc* rings = reinterpret_cast<const SamRingDesc*>(desc_table_.const_data_ptr<uint8_t>()) +
                             layer * kRows;
  const int32_t* meta = meta_.const_data_ptr<int32_t>();
  SamDecodeAttnParams a;
  a.rings = rings;
  a.q = qc.const_data_ptr();
  a.v_new = vc.const_data_ptr();
  a.k_new = kc.const_data_ptr();  // fused append (row r at pos[r]; -1 on padded rows)
  a.pos = meta;
  a.out = o.mutable_data_ptr();
  a.q_stride_b = qc.stride(0);
  a.v_stride_b = vc.stride(0);
  a.num_seqs = static_cast<int>(R);
  a.num_heads = static_cast<int>(H);
  a.num_kv_heads = static_cast<int>(Hk);
  a.head_dim = static_cast<int>(D);
  a.num_splits = prepared_splits_;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  a.dtype = KvDTypeOf(geometry_.dtype);
  if (a.num_splits > 1) {
    const SplitKWorkspaceBytes wb = SamDecodeAttnWorkspace(a.num_seqs, a.num_heads, a.num_splits, a.head_dim);
    a.partial_out = workspace_.mutable_data_ptr<float>();
    a.partial_lse = a.partial_out + wb.partial_out / 4;
  }
  if (const char* err = SamDecodeAttnValidate(a)) return KernelError("decode_attn", err);
  if (geometry_.device.is_cuda()) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    if (cudaError_t e = LaunchSamDecodeAttn(a, stream); e != cudaSuccess) {
      return KernelError("LaunchSamDecodeAttn", cudaGetErrorString(e));
    }
#else
    return absl::InternalError("sam_gate: CUDA tensors in a build without CUDA");
#endif
  } else {
    if (!SamDecodeAttnRef(a)) return KernelError("SamDecodeAttnRef", nullptr);
  }
  if (!out_packed) out.copy_(o);
  return absl::OkStatus();
}

absl::Status SamGateStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                           absl::Span<const SeqStep> steps, GroupTensors& t,
                                           const StepContext& ctx) {
  if (ctx.decode_prepared) {
    if (prepared_step_ != ctx.step) {
      return absl::InternalError(absl::StrCat("sam_gate: decode step ", ctx.step, " was not prepared"));
    }
    const int64_t R = prepared_rows_;
    at::Tensor out = t.out.narrow(0, 0, R);
    return DecodePrepared(layer, t.q.narrow(0, 0, R), t.k.narrow(0, 0, R), t.v.narrow(0, 0, R), out);
  }
  // Eager steps on CUDA: a group of decode rows in consecutive rows runs the
  // same batched launches (prepared here at layer 0); anything else (prompt
  // rows, CPU) one sequence at a time.
  const int64_t B = static_cast<int64_t>(seqs.size());
  bool batch = geometry_.device.is_cuda() && B >= 1 && B <= kRows;
  for (int64_t i = 0; batch && i < B; ++i) {
    const auto* c = static_cast<const SamGateSequenceCache*>(seqs[i]);
    batch = steps[i].n_new == 1 && !steps[i].is_prompt && c->ring_built(layer) &&
            t.row_offset[i] == t.row_offset[0] + i;
  }
  if (!batch) return Strategy::ForwardGroup(layer, seqs, steps, t, ctx);
  if (layer == 0 || prepared_step_ != ctx.step) KV_RETURN_IF_ERROR(PrepareDecode(seqs, steps, B, ctx).status());
  const int64_t r0 = t.row_offset[0];
  at::Tensor out = t.out.narrow(0, r0, B);
  return DecodePrepared(layer, t.q.narrow(0, r0, B), t.k.narrow(0, r0, B), t.v.narrow(0, r0, B), out);
}

}  // namespace kvstream
