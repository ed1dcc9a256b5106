// K2 sq_attend (spectral_quant.md §4.4, §6.6, §6.7, §7): attention of Tq query
// positions of every query head over Tk compressed keys (K/V records) plus an
// optional dense segment of Td keys, read straight from the packed records
// (no reconstructed cache). Flash-decoding style: split s of S covers a range
// of the Tk + Td keys; each split keeps an online softmax; a merge kernel
// combines the partials (S > 1).
//
// For query head hq (KV head h = hq / G), position t (row q = (hq, t)):
//   compressed key j < Tk:  l_j = scale * (q'_q . z^K_j
//                                 + [QJL] sqrt(pi/2) / d_eff[h] * r_norm_j * sum_{m<d_eff} sk_q[m] sgn_jm)
//   dense key j < Td:       l_j = scale * (q_q . k_j)
//   visible iff q_pos[t] >= key position (no mask when q_pos == nullptr)
//   Z = sum_visible exp(l - max);  p = exp(l - max) / Z
//   a_eig[q]   = sum_{compressed j} p_j z^V_j   (value eigen coordinates, D floats)
//   a_dense[q] = sum_{dense j}      p_j v_j     (raw coordinates)
// Both share Z, so the engine forms O = a_eig V_V^T + a_dense. A row with no
// visible key gets zeros in both.
//
// Shapes (legend in sq_layout.h)
//   q_rot     [Hq, Tq, D] fp32: q' = V_K(h)^T q (the engine's matmul)
//   q_sketch  [Hq, Tq, D] fp32: entries m < d_eff[h] hold (S_sem q)_m; null = QJL off
//   q_raw     [Hq, Tq, D] fp32: the unrotated query, read only for the dense segment
//   k_records [Tk, Hkv, Wk] u32, v_records [Tk, Hkv, Wv] u32 (sq_quantize.h)
//   k_rnorm   [Tk, Hkv] fp16 bits, k_signs [Tk, Hkv, SW] u32 (QJL only)
//   dense_k, dense_v [Td, Hkv, D] dense_dtype (bf16 or fp32), element (j, h, c) at
//             j * dense_stride_t + h * D + c
//   q_pos [Tq], k_pos [Tk], d_pos [Td] int32 absolute positions (device memory)
//   a_eig, a_dense [Hq, Tq, D] fp32 out
//   workspace: SqAttendWorkspaceBytes(...) bytes (S > 1), caller-owned, 16-byte aligned
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/kv_dtype.h"
#include "kernels/spectral_quant/sq_layout.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_SQ_ATTEND_HAS_LAUNCHER 1
#endif

namespace kvstream {

inline constexpr int kSqAttendMaxSplits = 128;
inline constexpr int kSqAttendSplitAlign = 32;       // split boundaries: multiples of this (one warp chunk)
inline constexpr int kSqAttendMinSplitKeys = 256;    // planner: fewest keys per split
inline constexpr int kSqAttendRowTile = 4;           // query rows (hq, t) per CTA
// CTAs the planner aims for per SM (also the kernel's launch bound): the
// decode kernel's shared memory (D 128, 12 + 14 record words: ~74 KB of
// 128-key K/V tiles for 4 warps) lets 3 fit in 227 KB; one wave, no tail.
inline constexpr int kSqAttendCtasPerSm = 3;

struct SqAttendParams {
  const float* q_rot = nullptr;        // [Hq, Tq, D]
  const float* q_sketch = nullptr;     // [Hq, Tq, D] or null (QJL off)
  const float* q_raw = nullptr;        // [Hq, Tq, D]; required iff Td > 0
  const uint32_t* k_records = nullptr; // [Tk, Hkv, Wk]
  const uint32_t* v_records = nullptr; // [Tk, Hkv, Wv]
  const uint16_t* k_rnorm = nullptr;   // [Tk, Hkv] fp16; required iff q_sketch
  const uint32_t* k_signs = nullptr;   // [Tk, Hkv, SW]; required iff q_sketch
  int sign_words = 0;                  // SW
  SqPlanView k_plan;                   // words = Wk; d_eff required iff q_sketch
  SqPlanView v_plan;                   // words = Wv
  const float* tables = nullptr;       // [kSqTableFloats]
  const void* dense_k = nullptr;       // [Td, Hkv, D] dense_dtype
  const void* dense_v = nullptr;       // [Td, Hkv, D] dense_dtype
  int64_t dense_stride_t = 0;          // elements between dense tokens; 0 = Hkv * D
  KvDType dense_dtype = KvDType::kBf16;// kBf16 or kFp32
  const int32_t* q_pos = nullptr;      // [Tq]; null = no causal mask
  const int32_t* k_pos = nullptr;      // [Tk]; null = compressed key j at position j
  const int32_t* d_pos = nullptr;      // [Td]; null = dense key j at position Tk + j
  float* a_eig = nullptr;              // [Hq, Tq, D] out
  float* a_dense = nullptr;            // [Hq, Tq, D] out; may be null iff Td == 0
  void* workspace = nullptr;           // SqAttendWorkspaceBytes bytes iff num_splits > 1
  int num_q_heads = 0;                 // Hq (multiple of Hkv)
  int num_kv_heads = 0;                // Hkv
  int head_dim = 0;                    // D: 64 or 128
  int num_queries = 0;                 // Tq (0 is a no-op)
  int num_keys = 0;                    // Tk >= 0 (with num_keys_live: the records' capacity)
  // Decode replayed from a CUDA graph: the live Tk in device memory (the twin
  // reads it from host memory), clamped to [0, num_keys]; splits are planned
  // on num_keys, the capacity, so one launch serves every length. null = num_keys.
  const int32_t* num_keys_live = nullptr;
  int num_dense = 0;                   // Td >= 0
  int num_splits = 1;                  // S in 1..kSqAttendMaxSplits
  float scale = 0.0f;                  // the model's attention scale, e.g. 1/sqrt(D) (host-computed)
};

// Split s of S over the Tk + Td keys (compressed first, then dense): chunk =
// ceil(n / S) rounded up to kSqAttendSplitAlign; trailing splits may be empty.
KV_HD void SqAttendSplitRange(int num_keys_total, int num_splits, int split, int* begin, int* end) {
  int chunk = (num_keys_total + num_splits - 1) / num_splits;
  chunk = (chunk + kSqAttendSplitAlign - 1) / kSqAttendSplitAlign * kSqAttendSplitAlign;
  const long long b = static_cast<long long>(split) * chunk;
  *begin = b < num_keys_total ? static_cast<int>(b) : num_keys_total;
  *end = (num_keys_total - *begin) < chunk ? num_keys_total : *begin + chunk;
}

// The Tk a launch attends over (num_keys_live, else num_keys).
KV_HD int SqLiveKeys(const SqAttendParams& p) {
  if (p.num_keys_live == nullptr) return p.num_keys;
  const int live = *p.num_keys_live;
  return live < 0 ? 0 : (live > p.num_keys ? p.num_keys : live);
}

// S for one call: enough CTAs (Hkv * row tiles * S) for one wave of
// kSqAttendCtasPerSm per SM,
// at least kSqAttendMinSplitKeys keys per split, at most kSqAttendMaxSplits.
int SqPlanAttendSplits(int num_q_heads, int num_kv_heads, int num_queries, int num_keys_total, int num_sms);

// Workspace bytes for S splits (0 when S <= 1): per (split, Hq, Tq) row two
// D-float partial sums (eig, dense) and the running max and sum.
inline size_t SqAttendWorkspaceBytes(int num_q_heads, int num_queries, int num_splits, int head_dim) {
  if (num_splits <= 1 || num_q_heads <= 0 || num_queries <= 0 || head_dim <= 0) return 0;
  return static_cast<size_t>(num_splits) * num_q_heads * num_queries * (2 * head_dim + 2) * sizeof(float);
}

// nullptr if valid, else a static message naming the bad field.
const char* SqAttendValidate(const SqAttendParams& p);

// CPU twin: reconstructs z^ exactly as K3, scores in double, the direct
// two-pass softmax (no splits; num_splits and workspace are ignored). Returns
// false (nothing written) if invalid.
bool SqAttendRef(const SqAttendParams& p);

#if defined(KVSTREAM_SQ_ATTEND_HAS_LAUNCHER)
// Grid (Hkv, row tiles, S), 4 warps per CTA, + a merge kernel for S > 1.
// Tq == 1 runs the decode kernel (sq_attend_decode.cuh), Tq > 1 the general
// one (sq_attend_kernel.cuh). Never allocates or syncs; cudaErrorInvalidValue
// on invalid params.
cudaError_t LaunchSqAttend(const SqAttendParams& p, cudaStream_t stream);
// The general kernel for every Tq (the pre-decode-kernel path): same outputs,
// kept for A/B benchmarks (sq_attend_bench --variant) and tests.
cudaError_t LaunchSqAttendLegacy(const SqAttendParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
