// Dense baseline: paged decode attention (one new query token per sequence)
// over a bf16/fp16/fp32 KV pool, with optional split-K over the sequence.
//
// Legend (dimension letters used in every shape below)
//   B    batch: sequences in this decode step
//   H    query heads;  Hkv  KV heads;  G = H / Hkv  query heads per KV head (GQA)
//   D    head dim (64 or 128, compile-time in the kernel)
//   P    page (block) size in tokens;  NB  pages in the pool
//   MB   max pages per sequence (row length of the block table)
//   S    splits of one sequence's tokens (split-K); 1 = no split
//   T    tokens of one sequence (its live length, seq_lens[b])
//
// Layouts
//   K pool, V pool (one layer)  [NB, Hkv, P, D]  element type `dtype`; one page of
//                                one head is P*D contiguous elements
//   block_table                 [B, MB] int32 page ids into the pool; entries past
//                                ceil(T/P) are never read
//   seq_lens                    [B] int32 on the DEVICE: read live by the kernel, so
//                                a captured CUDA graph can be replayed after the
//                                lengths change (the host only knows max_seq_len)
//   q                           [B, H, D] post-RoPE query, element type `dtype`
//                                (strides q_stride_b / q_stride_h, in elements)
//   out                         [B, H, D] same element type as q
//   partial_out (split-K)       [B, H, S, D] fp32, caller-owned workspace
//   partial_lse (split-K)       [B, H, S] fp32, natural-log log-sum-exp of the scaled
//                                scores of each split; -inf for an empty split
//   k_new, v_new (fused append) [B, Hkv, D] the step's new K/V rows (row stride
//                                new_stride_b), not yet in the pool
//   split_counters (split-K)    [B, Hkv * G/chunk] int32 (one per CTA column), zero between launches
// Query head h reads KV head h / G (heads grouped as in Llama/HF GQA).
//
// Semantics: out[b,h,:] = softmax(scale * q[b,h,:] . K[b,kvh,t,:], t < T) @ V[b,kvh,t,:]
// with fp32 accumulation; T = min(seq_lens[b], MB*P). T == 0 gives zeros.
// Split s covers tokens DenseDecodeSplitRange(T, S, s) (boundaries a multiple of
// kDenseDecodeSplitAlign): the same function in the kernel and the CPU twin.
//
// Fused append (k_new set): token T-1 of each sequence (T >= 1) is the step's
// new one; its K/V rows come from k_new/v_new and are stored into the pool at
// that position, so one launch does what PagedAppend + attention did. Fused
// merge (split_counters set, S > 1): the last split CTA of each (sequence,
// head chunk) to finish merges the partials and resets its counter to zero,
// so no merge kernel runs. NOTE(kvstream): both remove a launch and a full
// grid drain per layer, a few us each at B = 1 where the step is ~200 us of
// kernels per layer (bench/results/gpu/ncu_dense_step_1x1024_s7_h100.json).
//
// Header use without CUDA: this file includes no CUDA header unless compiled by
// nvcc or with KVSTREAM_HAVE_CUDA_RUNTIME defined (kvstream_kernels_cuda exports
// that definition and the CUDA include dir to whatever links it). The CPU twin,
// the planner and the validator are plain C++ in kvstream_kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/common/kv_dtype.h"
#include "kernels/common/split_k.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_DENSE_DECODE_HAS_LAUNCHER 1
#endif

namespace kvstream {

// ---- constants --------------------------------------------------------------
inline constexpr int kDenseDecodeMaxSplits = 128;      // S upper bound (workspace size)
inline constexpr int kDenseDecodeSplitAlign = 16;      // split boundaries: multiples of this
// Planner: fewest tokens per split. NOTE(kvstream): 64 since the merge loads
// its partials in batches: H100 fused sweep (1,1K) S=16 10.7 us vs S=8 11.2 us.
inline constexpr int kDenseDecodeMinSplitTokens = 64;
inline constexpr int kDenseDecodeCtasPerSm = 4;        // resident CTAs per SM (occupancy at G <= 4)
// Split CTAs the planner aims for per SM. NOTE(kvstream): half of what fits:
// on the H100 (B=1, Hkv=8, 132 SMs) S=32 beat the full-wave S=66 at 32K
// (57 vs 65 us) and 128K (193 vs 202 us): past ~2 CTAs/SM the bandwidth is
// saturated and extra splits only add partial writes and merge work.
inline constexpr int kDenseDecodeSplitCtasPerSm = 2;
// The same where the memory is faster: more bytes must be in flight per SM
// (Little's law), and a full wave wins. NOTE(kvstream): H200 (4.8 TB/s peak,
// 132 SMs) sweep, bench/results/gpu/dense_decode_s14_h200.json: (8,8K) S=8
// 74.1 us vs the half wave's S=4 81.6; (32,8K) S=2 261.7 vs S=1 296.8;
// (1,32K) S=64 44.6 vs 46.3; (1,128K) S=64 139.6 vs 155.9.
inline constexpr int kDenseDecodeFastMemorySplitCtasPerSm = 4;
inline constexpr double kDenseDecodeFastMemoryGbps = 4000.0;  // peak DRAM bandwidth from which that applies
inline constexpr int kDenseDecodeMaxGroupChunk = 8;    // most query heads one CTA handles

// ---- parameters -------------------------------------------------------------
// Pointers are device pointers for LaunchDenseDecode and host pointers for
// DenseDecodeRef. Device pointers q/out/k_pool/v_pool must be 16-byte aligned
// and q/out strides multiples of 16 bytes (the launcher checks).
struct DenseDecodeParams {
  const void* q = nullptr;              // [B, H, D] dtype, element (b,h,d) at b*q_stride_b + h*q_stride_h + d
  void* k_pool = nullptr;               // [NB, Hkv, P, D] dtype; written only at token T-1 with k_new set
  void* v_pool = nullptr;               // [NB, Hkv, P, D] dtype; as k_pool
  const int32_t* block_table = nullptr; // [B, MB] page ids in [0, NB)
  const int32_t* seq_lens = nullptr;    // [B] live lengths T (tokens), same memory side as the rest
  void* out = nullptr;                  // [B, H, D] dtype, element (b,h,d) at b*out_stride_b + h*out_stride_h + d
  float* partial_out = nullptr;         // [B, H, S, D] fp32 workspace; required iff num_splits > 1
  float* partial_lse = nullptr;         // [B, H, S] fp32 workspace; required iff num_splits > 1
  const void* k_new = nullptr;          // [B, Hkv, D] dtype, (b,h,d) at b*new_stride_b + h*D + d; or nullptr
  const void* v_new = nullptr;          // [B, Hkv, D] dtype, same strides as k_new; set iff k_new is
  int* split_counters = nullptr;        // [B, Hkv * G/chunk] int32 zeros (>= B*H is enough), or nullptr (separate merge kernel)

  int64_t new_stride_b = 0;  // elements between k_new (and v_new) rows; 0 = Hkv*D
  int64_t q_stride_b = 0;    // elements between q rows of consecutive sequences; 0 = H*D (packed)
  int64_t q_stride_h = 0;    // elements between heads within a q row; 0 = D
  int64_t out_stride_b = 0;  // elements; 0 = H*D
  int64_t out_stride_h = 0;  // elements; 0 = D

  int batch = 0;               // B (0 = nothing to do)
  int num_heads = 0;           // H, a multiple of num_kv_heads
  int num_kv_heads = 0;        // Hkv
  int head_dim = 0;            // D, see DenseDecodeSupports
  int page_size = 0;           // P tokens per page, >= 1
  int num_blocks = 0;          // NB pages in each pool (bounds-checked by the twin only)
  int max_blocks_per_seq = 0;  // MB, row length of block_table
  int max_seq_len = 0;         // host upper bound of seq_lens (tokens), <= MB*P; sizes the plan
  int num_splits = 1;          // S, from PlanDenseDecodeSplits; 1 writes out directly
  float scale = 0.0f;          // softmax scale, usually 1/sqrt(D) (host-computed)
  KvDType dtype = KvDType::kBf16;  // element type of q, k_pool, v_pool and out
};

// ---- host-side planning (pure functions, no CUDA) -----------------------------
// True for the (head_dim, dtype) pairs the kernel is built for: D in {64, 128},
// dtype in {fp32, fp16, bf16}.
bool DenseDecodeSupports(int head_dim, KvDType dtype);

// Query heads one CTA handles: the largest divisor of G that is <= 8, so a KV
// byte is read once per step for G <= 8 (G/chunk times otherwise).
int DenseDecodeGroupChunk(int group);

// Split count S for a step: fills about one wave of kDenseDecodeSplitCtasPerSm
// CTAs per SM (B * Hkv * G/chunk * S <= that, when B*Hkv*G/chunk is below it),
// keeps at least kDenseDecodeMinSplitTokens tokens per split, is in
// [1, kDenseDecodeMaxSplits], and from 8 up a multiple of 8. Returns 1 for
// non-positive arguments.
// `split_ctas_per_sm`: the wave's CTAs per SM (DenseDecodeSplitCtasPerSm).
int PlanDenseDecodeSplits(int batch, int num_heads, int num_kv_heads, int max_seq_len, int num_sms,
                          int split_ctas_per_sm = kDenseDecodeSplitCtasPerSm);
// kDenseDecodeFastMemorySplitCtasPerSm from kDenseDecodeFastMemoryGbps of
// peak DRAM bandwidth (2 * memory clock * bus width), else kDenseDecodeSplitCtasPerSm.
int DenseDecodeSplitCtasPerSm(double peak_dram_gbps);

// Workspace bytes for S splits (0 when num_splits <= 1): B*H*S*D*4 and B*H*S*4.
using DenseDecodeWorkspaceBytes = SplitKWorkspaceBytes;
inline DenseDecodeWorkspaceBytes DenseDecodeWorkspace(int batch, int num_heads, int num_splits, int head_dim) {
  return SplitKWorkspace(batch, num_heads, num_splits, head_dim);
}

// nullptr if p is valid for launch and twin; else a static message naming the
// bad field and its allowed values. Checks only host-visible fields.
const char* DenseDecodeValidate(const DenseDecodeParams& p);

// Tokens [*begin, *end) of split `split` for live length t over S splits:
// chunk = ceil(t/S) rounded up to kDenseDecodeSplitAlign; trailing splits may
// be empty. Shared by kernel and twin so partial results line up.
KV_HD void DenseDecodeSplitRange(int t, int num_splits, int split, int* begin, int* end) {
  int chunk = (t + num_splits - 1) / num_splits;
  chunk = (chunk + kDenseDecodeSplitAlign - 1) / kDenseDecodeSplitAlign * kDenseDecodeSplitAlign;
  const long long b = static_cast<long long>(split) * chunk;
  *begin = b < t ? static_cast<int>(b) : t;
  *end = (t - *begin) < chunk ? t : *begin + chunk;
}

// ---- CPU twin ------------------------------------------------------------------
// Same Params with host pointers. With k_new set, first stores the new rows
// into the pools at token T-1. Then fp32 math; per split an exact two-pass
// softmax over that split's tokens, then the same log-sum-exp merge as the GPU
// (partial results are written to partial_out/partial_lse when num_splits > 1;
// split_counters is not used), outputs rounded to dtype. Returns false (writing nothing) if DenseDecodeValidate fails
// or a page id that would be read is outside [0, num_blocks).
bool DenseDecodeRef(const DenseDecodeParams& p);

// ---- CUDA launcher -------------------------------------------------------------
#if defined(KVSTREAM_DENSE_DECODE_HAS_LAUNCHER)
// Enqueues the attention kernel (and, for S > 1, the merge kernel) on `stream`.
// Never allocates, synchronises or prints; returns cudaErrorInvalidValue for
// invalid params (DenseDecodeValidate, alignment) or an unsupported
// (head_dim, dtype), else the launch error. Capturable in a CUDA graph.
cudaError_t LaunchDenseDecode(const DenseDecodeParams& p, cudaStream_t stream);

// Resident CTAs per SM of the attention kernel for (head_dim, dtype, group) on
// the current device (for benches and the planner-assumption test).
cudaError_t DenseDecodeOccupancy(int head_dim, KvDType dtype, int group, int* ctas_per_sm);
#endif

}  // namespace kvstream
