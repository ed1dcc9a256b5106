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
//
// Shapes (legend in sam_ring.h)
//   q            [B, H, D] dtype, element (b, h, c) at b*q_stride_b + h*D + c
//   v_new        [B, Hk, D] dtype, element (b, g, c) at b*v_stride_b + g*D + c:
//                v_t of each sequence (SELF output of dropped heads)
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
// Planner: fewest slots per split. Small: a ring is short (W + S <= a few
// hundred slots) and a warp walks its slots one memory latency each, so the
// step time is slots per warp x latency; more splits shorten that walk.
inline constexpr int kSamAttnMinSplitSlots = 16;

struct SamDecodeAttnParams {
  const SamRingDesc* rings = nullptr;  // [B]
  const void* q = nullptr;             // [B, H, D] dtype
  const void* v_new = nullptr;         // [B, Hk, D] dtype
  void* out = nullptr;                 // [B, H, D] dtype
  float* partial_out = nullptr;        // [B, H, S, D] iff num_splits > 1
  float* partial_lse = nullptr;        // [B, H, S] iff num_splits > 1
  int64_t q_stride_b = 0;              // elements; 0 = H * D
  int64_t v_stride_b = 0;              // elements; 0 = Hk * D
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

// CPU twin: rows dequantized to fp32 (bit-identical x^), per split an exact
// two-pass softmax in double, splits merged by lse as on the GPU; partials
// written when S > 1. Returns false (nothing written) if invalid.
bool SamDecodeAttnRef(const SamDecodeAttnParams& p);

#if defined(KVSTREAM_SAM_HAS_LAUNCHER)
// Grid (S, H, B), 4 warps per CTA (+ the merge for S > 1). Never allocates or
// syncs; cudaErrorInvalidValue on invalid params. Rings 4-byte aligned; q,
// v_new, out element-aligned.
cudaError_t LaunchSamDecodeAttn(const SamDecodeAttnParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
