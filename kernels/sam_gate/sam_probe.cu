// SAM-Gate probe kernels (formulas and shapes: sam_probe.h). They run once
// per request and layer at the end of prefill on at most H=128, P=512, K=64,
// so they are written for clarity over peak speed: plain fp32 loops, one
// thread per output element, fixed-order tree sums (deterministic results).
// NOTE(sam): TODO(sam-perf): W = A_i U_j is H^2 P^2 K / 2 fmas (~17 M for
// H=32, P=64, K=8); tile it through shared memory if prefill profiles show it.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/sam_gate/sam_probe.h"

namespace kvstream {
namespace sam_probe_detail {
namespace {

constexpr int kThreads = 256;
constexpr float kNegInf = -__builtin_huge_valf();

unsigned Blocks(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

// Block-wide sum / max of one value per thread (blockDim.x == kThreads);
// fixed tree order, so the result does not depend on scheduling.
__device__ float BlockSum(float v, float* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  const float r = buf[0];
  __syncthreads();
  return r;
}
__device__ float BlockMax(float v, float* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + s]);
    __syncthreads();
  }
  const float r = buf[0];
  __syncthreads();
  return r;
}

// ---- sam_probe_softmax: one CTA per (h, r) ------------------------------------------
template <class T, int D>
__global__ void __launch_bounds__(kThreads) SoftmaxKernel(SamProbeSoftmaxParams p, int64_t qsh, int64_t qsp,
                                                          int64_t ksh, int64_t ksp) {
  __shared__ float qrow[D];
  __shared__ float z[kSamProbeMaxWindow];
  __shared__ float buf[kThreads];
  const int P = p.window, h = blockIdx.x / P, r = blockIdx.x % P, g = h / (p.num_heads / p.num_kv_heads);
  const T* q = static_cast<const T*>(p.q) + h * qsh + r * qsp;
  for (int d = threadIdx.x; d < D; d += kThreads) qrow[d] = ToF(q[d]);
  __syncthreads();
  float mx = kNegInf;
  for (int c = threadIdx.x; c <= r; c += kThreads) {
    const T* k = static_cast<const T*>(p.k) + g * ksh + c * ksp;
    float dot = 0.0f;
#pragma unroll 8
    for (int d = 0; d < D; ++d) dot = fmaf(qrow[d], ToF(k[d]), dot);
    z[c] = dot * p.scale;
    mx = fmaxf(mx, z[c]);
  }
  mx = BlockMax(mx, buf);
  float l = 0.0f;
  for (int c = threadIdx.x; c <= r; c += kThreads) {
    z[c] = expf(z[c] - mx);
    l += z[c];
  }
  l = BlockSum(l, buf);
  float* row = p.a + (static_cast<int64_t>(h) * P + r) * P;
  for (int c = threadIdx.x; c < P; c += kThreads) row[c] = c <= r ? z[c] / l : 0.0f;
}

template <class T>
cudaError_t RunSoftmax(const SamProbeSoftmaxParams& p, cudaStream_t stream) {
  const int64_t P = p.window, D = p.head_dim;
  const int64_t qsh = p.q_stride_h ? p.q_stride_h : P * D, qsp = p.q_stride_p ? p.q_stride_p : D;
  const int64_t ksh = p.k_stride_h ? p.k_stride_h : P * D, ksp = p.k_stride_p ? p.k_stride_p : D;
  const unsigned blocks = static_cast<unsigned>(p.num_heads * p.window);
  if (p.head_dim == 64) {
    SoftmaxKernel<T, 64><<<blocks, kThreads, 0, stream>>>(p, qsh, qsp, ksh, ksp);
  } else if (p.head_dim == 128) {
    SoftmaxKernel<T, 128><<<blocks, kThreads, 0, stream>>>(p, qsh, qsp, ksh, ksp);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

// ---- sam_rademacher -------------------------------------------------------------------
__global__ void RademacherKernel(SamRademacherParams p) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= p.window * p.num_probes) return;
  p.z[i] = SamRademacher(p.seed, p.layer, i % p.num_probes, i / p.num_probes);
}

// ---- sam_probe_products -----------------------------------------------------------------
// X[r, k] = sum_{c <= r} A[r, c] Y[c, k], fmaf in ascending c (the twin's order).
__device__ __forceinline__ float LowerTimes(const float* A, const float* Y, int P, int K, int r, int k) {
  float acc = 0.0f;
  for (int c = 0; c <= r; ++c) acc = fmaf(A[static_cast<int64_t>(r) * P + c], Y[static_cast<int64_t>(c) * K + k], acc);
  return acc;
}

__global__ void __launch_bounds__(kThreads) UKernel(SamProbeProductsParams p) {
  const int64_t pk = static_cast<int64_t>(p.window) * p.num_probes;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (i >= p.num_heads * pk) return;
  const int h = static_cast<int>(i / pk), r = static_cast<int>(i % pk) / p.num_probes, k = static_cast<int>(i % p.num_probes);
  p.u[i] = LowerTimes(p.a + static_cast<int64_t>(h) * p.window * p.window, p.z, p.window, p.num_probes, r, k);
}

__global__ void __launch_bounds__(kThreads) EKernel(SamProbeProductsParams p) {
  __shared__ float buf[kThreads];
  const int64_t pk = static_cast<int64_t>(p.window) * p.num_probes;
  const float* u = p.u + blockIdx.x * pk;
  float s = 0.0f;
  for (int64_t x = threadIdx.x; x < pk; x += kThreads) {
    const float d = u[x] - p.z[x];
    s = fmaf(d, d, s);
  }
  s = BlockSum(s, buf);
  if (threadIdx.x == 0) p.e[blockIdx.x] = s / static_cast<float>(pk);
}

__global__ void __launch_bounds__(kThreads) WKernel(SamProbeProductsParams p) {
  const int64_t pk = static_cast<int64_t>(p.window) * p.num_probes, H = p.num_heads;
  const int64_t x = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (x >= H * H * pk) return;
  const int64_t ij = x / pk;
  const int i = static_cast<int>(ij / H), j = static_cast<int>(ij % H);
  const int r = static_cast<int>(x % pk) / p.num_probes, k = static_cast<int>(x % p.num_probes);
  p.w[x] = LowerTimes(p.a + static_cast<int64_t>(i) * p.window * p.window, p.u + j * pk, p.window, p.num_probes, r, k);
}

// ---- sam_probe_pairs: one CTA per (i, j) ------------------------------------------------
__global__ void __launch_bounds__(kThreads) PairsKernel(SamProbePairsParams p) {
  __shared__ float buf[kThreads];
  const int H = p.num_heads, i = blockIdx.x / H, j = blockIdx.x % H;
  if (i >= j) {
    if (threadIdx.x == 0) p.f[blockIdx.x] = 0.0f;
    return;
  }
  const int64_t pk = static_cast<int64_t>(p.window) * p.num_probes;
  const float* wij = p.w + (static_cast<int64_t>(i) * H + j) * pk;
  const float* wji = p.w + (static_cast<int64_t>(j) * H + i) * pk;
  float s = 0.0f;
  for (int64_t x = threadIdx.x; x < pk; x += kThreads) {
    const float d = wij[x] - wji[x];
    s = fmaf(d, d, s);
  }
  s = BlockSum(s, buf);
  if (threadIdx.x == 0) p.f[blockIdx.x] = s / static_cast<float>(p.num_probes);
}

// ---- sam_probe_exact ----------------------------------------------------------------------
__global__ void __launch_bounds__(kThreads) ExactPairsKernel(SamProbeExactParams p) {
  __shared__ float buf[kThreads];
  const int H = p.num_heads, P = p.window, i = blockIdx.x / H, j = blockIdx.x % H;
  if (i >= j) {
    if (threadIdx.x == 0) p.f[blockIdx.x] = 0.0f;
    return;
  }
  const int64_t pp = static_cast<int64_t>(P) * P;
  const float* ai = p.a + i * pp;
  const float* aj = p.a + j * pp;
  float s = 0.0f;
  for (int64_t x = threadIdx.x; x < pp; x += kThreads) {
    const int r = static_cast<int>(x / P), c = static_cast<int>(x % P);
    if (c > r) continue;  // lower-triangular factors: the commutator is too
    float v = 0.0f;
    for (int m = c; m <= r; ++m) v += ai[r * P + m] * aj[m * P + c] - aj[r * P + m] * ai[m * P + c];
    s = fmaf(v, v, s);
  }
  s = BlockSum(s, buf);
  if (threadIdx.x == 0) p.f[blockIdx.x] = s;
}

__global__ void __launch_bounds__(kThreads) ExactEKernel(SamProbeExactParams p) {
  __shared__ float buf[kThreads];
  const int P = p.window;
  const int64_t pp = static_cast<int64_t>(P) * P;
  const float* a = p.a + blockIdx.x * pp;
  float s = 0.0f;
  for (int64_t x = threadIdx.x; x < pp; x += kThreads) {
    const float d = a[x] - ((x / P == x % P) ? 1.0f : 0.0f);
    s = fmaf(d, d, s);
  }
  s = BlockSum(s, buf);
  if (threadIdx.x == 0) p.e[blockIdx.x] = s / static_cast<float>(P);
}

}  // namespace
}  // namespace sam_probe_detail

cudaError_t LaunchSamProbeSoftmax(const SamProbeSoftmaxParams& p, cudaStream_t stream) {
  using namespace sam_probe_detail;
  if (SamProbeSoftmaxValidate(p) != nullptr) return cudaErrorInvalidValue;
  switch (p.dtype) {
    case KvDType::kBf16: return RunSoftmax<__nv_bfloat16>(p, stream);
    case KvDType::kFp16: return RunSoftmax<__half>(p, stream);
    case KvDType::kFp32: return RunSoftmax<float>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchSamRademacher(const SamRademacherParams& p, cudaStream_t stream) {
  using namespace sam_probe_detail;
  if (SamRademacherValidate(p) != nullptr) return cudaErrorInvalidValue;
  RademacherKernel<<<Blocks(int64_t(p.window) * p.num_probes), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchSamProbeProducts(const SamProbeProductsParams& p, cudaStream_t stream) {
  using namespace sam_probe_detail;
  if (SamProbeProductsValidate(p) != nullptr) return cudaErrorInvalidValue;
  const int64_t hpk = int64_t(p.num_heads) * p.window * p.num_probes;
  UKernel<<<Blocks(hpk), kThreads, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  EKernel<<<p.num_heads, kThreads, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  WKernel<<<Blocks(hpk * p.num_heads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchSamProbePairs(const SamProbePairsParams& p, cudaStream_t stream) {
  using namespace sam_probe_detail;
  if (SamProbePairsValidate(p) != nullptr) return cudaErrorInvalidValue;
  PairsKernel<<<p.num_heads * p.num_heads, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchSamProbeExact(const SamProbeExactParams& p, cudaStream_t stream) {
  using namespace sam_probe_detail;
  if (SamProbeExactValidate(p) != nullptr) return cudaErrorInvalidValue;
  ExactPairsKernel<<<p.num_heads * p.num_heads, kThreads, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  ExactEKernel<<<p.num_heads, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
