// sam_decode_attn (sam_gate.md §4 decode step 3, §7): one decode token per
// sequence attends over its layer ring, dequantizing int4/int8 rows inline.
//
//   kept head h (ring group j = head_ring_group[h]):
//     z_s = scale * q_h . k^_s  over the slots s of the ring with slot_pos[s] >= 0
//     o_h = sum_s softmax_s(z_s) v^_s                         (fp32 accumulation)
//   dropped head (j = -1): SELF o_h = v_new[h / G] (unquantized), ZERO o_h = 0.
// No position mask: every resident position is <= t and RoPE is baked in
// (§4 decode step 3). The ring must already hold token t (kv_write first).
// Split-K: split s of S covers slots SamDecodeSplitRange(C, S, s) of each
// sequence's own capacity C; each split writes a partial output and its
// natural-log log-sum-exp, and a merge kernel combines them (S > 1).
// Fused append (k_new != nullptr, the engine's decode): the launch also does
// what sam_kv_write does for one row per sequence (position pos[b], seq_len
// pos[b] + 1, no fake quantization) and then attends, so a decode layer is
// one launch instead of two. Each CTA encodes the new row of its own ring
// group in registers (bit-identical to the write) and attends over it from
// there, skipping the slot being written; CTA (split 0, head j) writes ring
// group j's row and CTA (split 0, head 0) the slot's position, so no CTA
// reads what another writes in the same launch.
//
// Shapes (legend in sam_ring.h)
//   q            [B, H, D] dtype, element (b, h, c) at b*q_stride_b + h*D + c
//   v_new        [B, Hk, D] dtype, element (b, g, c) at b*v_stride_b + g*D + c:
//                v_t of each sequence (SELF output of dropped heads)
//   k_new        [B, Hk, D] dtype, element (b, g, c) at b*v_stride_b + g*D + c:
//                k_t of each sequence (fused append only; same strides as v_new)
//   pos          [B] int32 position t of each sequence's new row (fused
//                append only); < 0 = padded row: nothing written, the ring
//                attended as it is
//   out          [B, H, D] dtype (packed)
//   partial_out  [B, H, S, D] fp32, partial_lse [B, H, S] fp32 (iff S > 1);
//                not written for dropped heads
//   rings        [B] SamRingDesc (device array for the launcher)
#pragma once

#include <cstdint>

#include "kernels/common/kv_dtype.h"
#include "kernels/common/split_k.h"
#include "kernels/sam_gate/sam_ring.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_SAM_HAS_LAUNCHER 1
#endif

namespace kvstream {

inline constexpr int kSamAttnMaxSplits = 64;
// Planner: fewest slots per split = what one CTA covers in one round of
// loads (16 warps x 8 slots in flight each). A ring is short (W + S <= a few
// hundred slots), so a typical ring is one CTA per head with no merge
// launch: at decode sizes a launch costs about what a round of loads does.
inline constexpr int kSamAttnMinSplitSlots = 128;

struct SamDecodeAttnParams {
  const SamRingDesc* rings = nullptr;  // [B]
  const void* q = nullptr;             // [B, H, D] dtype
  const void* v_new = nullptr;         // [B, Hk, D] dtype
  const void* k_new = nullptr;         // [B, Hk, D] dtype, or nullptr: no fused append
  const int32_t* pos = nullptr;        // [B] iff k_new (device memory for the launcher)
  void* out = nullptr;                 // [B, H, D] dtype
  float* partial_out = nullptr;        // [B, H, S, D] iff num_splits > 1
  float* partial_lse = nullptr;        // [B, H, S] iff num_splits > 1
  int64_t q_stride_b = 0;              // elements; 0 = H * D
  int64_t v_stride_b = 0;              // elements; 0 = Hk * D (k_new's too)
  int num_seqs = 0;                    // B
  int num_heads = 0;                   // H (multiple of Hk)
  int num_kv_heads = 0;                // Hk
  int head_dim = 0;                    // D: 64 or 128
  int num_splits = 1;                  // S
  float scale = 0.0f;                  // sigma, the model's attention scale (host-computed)
  KvDType dtype = KvDType::kBf16;      // of q, v_new, out
};

// Split s of S over a ring of C slots: chunk = ceil(C / S); trailing splits
// may be empty. Kernel and twin share it.
KV_HD void SamDecodeSplitRange(int capacity, int num_splits, int split, int* begin, int* end) {
  const int chunk = (capacity + num_splits - 1) / num_splits;
  const long long b = static_cast<long long>(split) * chunk;
  *begin = b < capacity ? static_cast<int>(b) : capacity;
  *end = (capacity - *begin) < chunk ? capacity : *begin + chunk;
}

// S for a decode step: enough CTAs (B * H * S) to fill ~2 waves of num_sms,
// at least kSamAttnMinSplitSlots slots per split; max_capacity = the largest
// C of the batch.
int PlanSamDecodeSplits(int num_seqs, int num_heads, int max_capacity, int num_sms);

// B*H*S*D*4 and B*H*S*4 bytes (0 when num_splits <= 1).
inline SplitKWorkspaceBytes SamDecodeAttnWorkspace(int num_seqs, int num_heads, int num_splits, int head_dim) {
  return SplitKWorkspace(num_seqs, num_heads, num_splits, head_dim);
}

// nullptr if valid, else a static message naming the bad field (rings[] are
// device memory for the launcher; the twin checks each with SamRingDescValidate).
const char* SamDecodeAttnValidate(const SamDecodeAttnParams& p);

// CPU twin: with k_new, SamKvWriteRef of each sequence's new row first;
// then rows dequantized to fp32 (bit-identical x^), per split an exact
// two-pass softmax in double, splits merged by lse as on the GPU; partials
// written when S > 1. Returns false (nothing written) if invalid.
bool SamDecodeAttnRef(const SamDecodeAttnParams& p);

#if defined(KVSTREAM_SAM_HAS_LAUNCHER)
// Grid (S, H, B), 16 warps per CTA (+ the merge for S > 1). Never allocates or
// syncs; cudaErrorInvalidValue on invalid params. Rings 4-byte aligned; q,
// v_new, out element-aligned.
cudaError_t LaunchSamDecodeAttn(const SamDecodeAttnParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
