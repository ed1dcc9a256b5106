// Fused elementwise ops of the Llama block, for the CUDA decode path. Each
// replaces several ATen kernels (a bf16 RMSNorm alone is ~7: cast, pow, mean,
// add, rsqrt, mul, cast, mul), and at decode batch sizes the block's time is
// mostly launches: ~40 kernels a layer in eager ATen, ~10 with these.
//
// Every op rounds where the ATen composition it replaces rounds (to the
// storage dtype after each ATen op), so the CUDA path stays the same model as
// the CPU fp32 path up to bf16 rounding, not a different approximation.
//
// Legend: N rows (tokens of the step), E hidden size, I intermediate size,
// H / Hkv query / KV heads, D head dim (even).
#pragma once

#include <cstdint>

#include "kernels/common/kv_dtype.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_FUSED_OPS_HAS_LAUNCHER 1
#endif

namespace kvstream {

// Hugging Face LlamaRMSNorm, optionally after a residual add:
//   if residual: residual[r] = residual[r] + x[r]          (rounded to dtype)
//   src = residual ? residual : x
//   y[r] = dtype(src * rsqrt(mean(src^2) + eps))          (statistics in fp32)
//   out[r] = dtype(weight * y)
struct RmsNormParams {
  const void* x = nullptr;    // [N, E] dtype, row stride x_stride
  void* residual = nullptr;   // [N, E] dtype, contiguous, updated in place; nullptr = no add
  const void* weight = nullptr;  // [E] dtype
  void* out = nullptr;        // [N, E] dtype, contiguous (may alias nothing else)
  int64_t x_stride = 0;       // elements; 0 = E
  int rows = 0;               // N
  int hidden = 0;             // E, a multiple of 8
  float eps = 1e-5f;
  KvDType dtype = KvDType::kBf16;
};

// SwiGLU gate: out[r, i] = dtype(dtype(silu(gu[r, i])) * gu[r, I + i]).
struct SiluMulParams {
  const void* gate_up = nullptr;  // [N, 2I] dtype, gate columns then up columns
  void* out = nullptr;            // [N, I] dtype
  int rows = 0;                   // N
  int inter = 0;                  // I, a multiple of 8
  KvDType dtype = KvDType::kBf16;
};

// Rotary embedding (rotate-half convention, as HF Llama) on the q and k
// heads of a fused qkv row, in place. Per row r, pair i < D/2:
//   c = dtype(cos(pos[r] * inv_freq[i])), s = dtype(sin(...))
//   x1' = dtype(dtype(x1 * c) - dtype(x2 * s)); x2' = dtype(dtype(x2 * c) + dtype(x1 * s))
struct RopeParams {
  void* qkv = nullptr;            // [N, (H + 2 Hkv) D] dtype, row stride qkv_stride
  const int64_t* positions = nullptr;  // [N] absolute positions
  const float* inv_freq = nullptr;     // [D/2] fp32 (with the model's rope scaling applied)
  int64_t qkv_stride = 0;         // elements; 0 = (H + 2 Hkv) D
  int rows = 0;                   // N
  int num_heads = 0;              // H
  int num_kv_heads = 0;           // Hkv (the k heads follow the H q heads)
  int head_dim = 0;               // D, even
  KvDType dtype = KvDType::kBf16;
};

// Host-visible checks; nullptr when valid, else the bad field and its range.
const char* RmsNormValidate(const RmsNormParams& p);
const char* SiluMulValidate(const SiluMulParams& p);
const char* RopeValidate(const RopeParams& p);

// CPU twins (host pointers; same rounding points, fp32 math). false = invalid.
bool RmsNormRef(const RmsNormParams& p);
bool SiluMulRef(const SiluMulParams& p);
bool RopeRef(const RopeParams& p);
// RopeRef's rotation on the first `heads` heads (D = head_dim each) of `rows`
// rows `stride` elements apart, in place, unchecked; also the GEMV twin's
// kRope epilogue (kernels/model/gemv.h).
void RopeHeadsRef(void* x, int64_t stride, int rows, int heads, int head_dim, const int64_t* positions,
                  const float* inv_freq, KvDType dtype);

#if defined(KVSTREAM_FUSED_OPS_HAS_LAUNCHER)
// Enqueue on `stream`; never allocate or synchronise; capturable in a graph.
cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream);
cudaError_t LaunchSiluMul(const SiluMulParams& p, cudaStream_t stream);
cudaError_t LaunchRope(const RopeParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
