// Skinny matrix product for decode: y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias),
// M ≤ 8 rows (the tokens of a small decode batch), bf16/fp16 in and out,
// fp32 accumulation, one rounding to the storage dtype at the end.
//
// Why our own: at decode batch sizes the model's time is the bytes of its
// weights (Llama-3-8B: 15 GB a step), and a library GEMM picked for M = 1..8
// reaches ~75% of the copy bandwidth on the H100 (bench/results/gpu/
// e2e_decode_h100.json). This kernel streams each weight row once with
// 16-byte loads, many in flight per SM, and keeps x in L1: the work is
// R rows × M tokens × 8 FMAs per 16 bytes of W, far below compute limits.
//
// Legend: M rows of x (≤ kGemvMaxRows), N output features, K input features.
#pragma once

#include <cstdint>

#include "kernels/common/kv_dtype.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_GEMV_HAS_LAUNCHER 1
#endif

namespace kvstream {

inline constexpr int kGemvMaxRows = 8;
// Shared memory the fused-norm prologue may use for x' (rows · K fp32).
inline constexpr int64_t kGemvNormMaxSmemBytes = 48 * 1024;
// Rows of x up to which the paired-row epilogues (below) are available.
inline constexpr int kGemvEpilogueMaxRows = 2;

// What happens to the projection's output before it is stored. The paired
// epilogues give one warp the two weight rows whose outputs the op combines,
// so the decode block's RoPE and SwiGLU kernels disappear into the GEMV:
//   kSiluMul: rows n and n + N/2 (gate, up): y[m, n] = SiluMul(gate, up) with
//             SiluMulRef's rounding (kernels/model/fused_ops.h); y is [M, N/2].
//   kRope:    rows j and j + D/2 of each D-row head: the first rope_heads
//             heads (q, then k) are rotated as RopeRef does; the others (v)
//             are stored as they are; y is [M, N].
enum class GemvEpilogue : int { kNone = 0, kSiluMul = 1, kRope = 2 };

struct GemvParams {
  const void* x = nullptr;     // [M, K] dtype, row stride x_stride, 16-byte aligned rows
  const void* w = nullptr;     // [N, K] dtype, contiguous, 16-byte aligned
  const void* bias = nullptr;  // [N] dtype, or nullptr
  void* y = nullptr;           // [M, N] dtype, row stride y_stride
  int64_t x_stride = 0;        // elements; 0 = K
  int64_t y_stride = 0;        // elements; 0 = N
  int rows = 0;                // M, 1..kGemvMaxRows
  int out_features = 0;        // N ≥ 1
  int in_features = 0;         // K, a multiple of 8
  KvDType dtype = KvDType::kBf16;  // bf16 or fp16

  // Optional fused residual add + RMSNorm prologue (the decode block's attn /
  // ffn norm folded into the projection after it, one kernel fewer each):
  //   src[m]  = delta ? dtype(x[m] + delta[m]) : x[m]
  //   x'[m]   = dtype(norm_weight · dtype(src[m] · rsqrt(mean(src[m]²) + eps)))
  //   y       = x' · Wᵀ (+ bias)
  // with the rounding points of RmsNormRef (kernels/model/fused_ops.h). Every
  // CTA computes x' for itself (x is a few KB, read from L2); CTA 0 also
  // writes src to residual_out, so x is never written while others read it.
  // Needs rows · in_features · 4 ≤ kGemvNormMaxSmemBytes. (A per-warp
  // version without shared memory or barriers measured slower end to end on
  // the H100: 145 vs 154-158 tok/s at (1, 1K), bench/results/gpu/e2e_gemv_perwarp_norm_h100.json
  // vs e2e_gemv_epilogue_h100.json.)
  const void* norm_weight = nullptr;  // [K] dtype, 16-byte aligned; nullptr = no prologue
  const void* delta = nullptr;        // [M, K] dtype contiguous, or nullptr
  void* residual_out = nullptr;       // [M, K] dtype contiguous; required with delta; must not alias x
  float eps = 1e-5f;

  // Optional paired-row epilogue (GemvEpilogue above); rows ≤ kGemvEpilogueMaxRows.
  GemvEpilogue epilogue = GemvEpilogue::kNone;
  const int64_t* positions = nullptr;  // kRope: [M] absolute positions
  const float* inv_freq = nullptr;     // kRope: [D/2] fp32
  int head_dim = 0;                    // kRope: D, even; out_features a multiple of D
  int rope_heads = 0;                  // kRope: heads [0, rope_heads) rotated, 0 ≤ rope_heads ≤ N / D
};

// nullptr when valid, else the bad field and its allowed range.
const char* GemvValidate(const GemvParams& p);

// Output columns of y: N, or N/2 under kSiluMul.
int GemvOutColumns(const GemvParams& p);

// CPU twin on host pointers: the prologue as RmsNormRef, then fp32
// accumulation in index order, bias added in fp32, one rounding to dtype,
// then the epilogue as SiluMulRef / RopeRef on those rounded values.
// false = invalid.
bool GemvRef(const GemvParams& p);

#if defined(KVSTREAM_GEMV_HAS_LAUNCHER)
// Enqueue on `stream`; never allocates or synchronises; capturable in a graph.
cudaError_t LaunchGemv(const GemvParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
