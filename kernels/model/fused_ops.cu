// CUDA side of kernels/model/fused_ops.h. Memory-bound elementwise kernels:
// 16-byte vector loads, fp32 math, rounding points as documented there.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/common/device_math.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/cuda_check.h"
#include "kernels/model/fused_ops.h"
#include "kernels/model/fused_ops_math.cuh"

namespace kvstream {
namespace {

constexpr int kNormThreads = 256;

// One CTA per row: pass 1 adds the residual and sums squares, pass 2 scales
// (it re-reads the row, which is in L1/L2 by then).
template <class T>
__global__ void __launch_bounds__(kNormThreads) RmsNormKernel(RmsNormParams p) {
  PdlLaunchDependents();  // the GEMV after may start streaming its weights
  PdlWaitForPrerequisite();  // launched as a programmatic dependent: x comes from the kernel before
  using V = Vec16<T>;
  constexpr int kN = V::kN;
  const int64_t r = blockIdx.x;
  const int64_t xs = p.x_stride ? p.x_stride : p.hidden;
  const uint4* x = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + r * xs);
  uint4* res = p.residual ? reinterpret_cast<uint4*>(static_cast<T*>(p.residual) + r * p.hidden) : nullptr;
  const uint4* src = res ? res : x;
  const int chunks = p.hidden / kN;
  float ss = 0.f;
  for (int c = threadIdx.x; c < chunks; c += kNormThreads) {
    float a[kN];
    V::Load(x[c], a);
    if (res) {
      float b[kN];
      V::Load(res[c], b);
#pragma unroll
      for (int j = 0; j < kN; ++j) a[j] = RoundTo<T>(b[j] + a[j]);
      res[c] = V::Store(a);
    }
#pragma unroll
    for (int j = 0; j < kN; ++j) ss += a[j] * a[j];
  }
  __shared__ float warp_sums[kNormThreads / 32];
  __shared__ float inv_rms;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int w = 0; w < kNormThreads / 32; ++w) t += warp_sums[w];
    inv_rms = rsqrtf(t / static_cast<float>(p.hidden) + p.eps);
  }
  __syncthreads();
  const float inv = inv_rms;
  const uint4* w = reinterpret_cast<const uint4*>(p.weight);
  uint4* out = reinterpret_cast<uint4*>(static_cast<T*>(p.out) + r * p.hidden);
  for (int c = threadIdx.x; c < chunks; c += kNormThreads) {
    float a[kN], wf[kN];
    V::Load(src[c], a);
    V::Load(w[c], wf);
#pragma unroll
    for (int j = 0; j < kN; ++j) a[j] = wf[j] * RoundTo<T>(a[j] * inv);
    out[c] = V::Store(a);
  }
}

template <class T>
__global__ void SiluMulKernel(SiluMulParams p) {
  PdlLaunchDependents();
  PdlWaitForPrerequisite();
  using V = Vec16<T>;
  constexpr int kN = V::kN;
  const int64_t per_row = p.inter / kN;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= per_row * p.rows) return;
  const int64_t r = idx / per_row, c = idx % per_row;
  const uint4* row = reinterpret_cast<const uint4*>(static_cast<const T*>(p.gate_up) + r * 2 * p.inter);
  float g[kN], u[kN];
  V::Load(row[c], g);
  V::Load(row[per_row + c], u);
#pragma unroll
  for (int j = 0; j < kN; ++j) g[j] = SiluMulValue<T>(g[j], u[j]);
  reinterpret_cast<uint4*>(static_cast<T*>(p.out) + r * p.inter)[c] = V::Store(g);
}

// One thread per (row, q-or-k head, pair).
template <class T>
__global__ void RopeKernel(RopeParams p) {
  PdlWaitForPrerequisite();
  const int half = p.head_dim / 2, heads = p.num_heads + p.num_kv_heads;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<int64_t>(p.rows) * heads * half) return;
  const int i = static_cast<int>(idx % half);
  const int h = static_cast<int>((idx / half) % heads);
  const int64_t r = idx / (static_cast<int64_t>(half) * heads);
  const int64_t stride = p.qkv_stride ? p.qkv_stride : static_cast<int64_t>(p.num_heads + 2 * p.num_kv_heads) * p.head_dim;
  T* x = static_cast<T*>(p.qkv) + r * stride + static_cast<int64_t>(h) * p.head_dim;
  float y1, y2;
  RopePair<T>(ToF<T>(x[i]), ToF<T>(x[half + i]), p.positions[r], p.inv_freq[i], y1, y2);
  x[i] = FromF<T>(y1);
  x[half + i] = FromF<T>(y2);
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace

cudaError_t LaunchRmsNorm(const RmsNormParams& p, cudaStream_t stream) {
  if (RmsNormValidate(p) != nullptr) return cudaErrorInvalidValue;
  const int64_t xs = p.x_stride ? p.x_stride : p.hidden;
  const size_t elt = KvDTypeSize(p.dtype);
  if (!Aligned16(p.x) || !Aligned16(p.out) || !Aligned16(p.weight) || (p.residual && !Aligned16(p.residual)) ||
      (xs * elt) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) return cudaSuccess;
  if (p.dtype == KvDType::kBf16) {
    return LaunchPdl(RmsNormKernel<__nv_bfloat16>, dim3(p.rows), dim3(kNormThreads), 0, stream, p);
  }
  if (p.dtype == KvDType::kFp32) {
    return LaunchPdl(RmsNormKernel<float>, dim3(p.rows), dim3(kNormThreads), 0, stream, p);
  }
  return cudaErrorInvalidValue;  // fp16: twin only in this version
}

cudaError_t LaunchSiluMul(const SiluMulParams& p, cudaStream_t stream) {
  if (SiluMulValidate(p) != nullptr || !Aligned16(p.gate_up) || !Aligned16(p.out)) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  const int kN = p.dtype == KvDType::kFp32 ? 4 : 8;
  const int64_t threads = static_cast<int64_t>(p.rows) * (p.inter / kN);
  const unsigned blocks = static_cast<unsigned>((threads + 255) / 256);
  if (p.dtype == KvDType::kBf16) {
    return LaunchPdl(SiluMulKernel<__nv_bfloat16>, dim3(blocks), dim3(256), 0, stream, p);
  }
  if (p.dtype == KvDType::kFp32) {
    return LaunchPdl(SiluMulKernel<float>, dim3(blocks), dim3(256), 0, stream, p);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchRope(const RopeParams& p, cudaStream_t stream) {
  if (RopeValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  const int64_t threads = static_cast<int64_t>(p.rows) * (p.num_heads + p.num_kv_heads) * (p.head_dim / 2);
  const unsigned blocks = static_cast<unsigned>((threads + 255) / 256);
  if (p.dtype == KvDType::kBf16) {
    return LaunchPdl(RopeKernel<__nv_bfloat16>, dim3(blocks), dim3(256), 0, stream, p);
  }
  if (p.dtype == KvDType::kFp32) {
    return LaunchPdl(RopeKernel<float>, dim3(blocks), dim3(256), 0, stream, p);
  }
  return cudaErrorInvalidValue;
}

}  // namespace kvstream
