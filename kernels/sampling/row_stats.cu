// row_stats kernel (semantics: row_stats.h). One 1024-thread CTA per row, two
// passes over the row (the second from L2): the maximum and its first index,
// then the sum of exp(x - max). Each thread keeps four independent chains
// per pass, so the loads and the exps overlap; the online (max, rescaled
// sum) update this replaces was one dependent chain of ~125 exps per thread
// and took 32 us for one 128K-wide row on the H100 (ncu_dense_step_1x1024_
// s7_h100.json), on the critical path of every decode step. The merge is
// exact for max and argmax (ties to the lower index); the sum is fp32,
// ~1e-6 relative.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>

#include "kernels/common/device_math.cuh"
#include "kernels/sampling/row_stats.h"

namespace kvstream {
namespace row_stats_detail {
namespace {

constexpr int kThreads = 1024;
constexpr int kChains = 4;
constexpr float kNegInf = -__builtin_huge_valf();

struct MaxArg {
  float m;  // -inf: none
  int arg;  // INT_MAX: none
};

__device__ __forceinline__ MaxArg Better(const MaxArg& a, const MaxArg& b) {
  if (a.m > b.m) return a;
  if (b.m > a.m) return b;
  return MaxArg{a.m, min(a.arg, b.arg)};
}

__device__ __forceinline__ MaxArg ShuffleMax(MaxArg a) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    MaxArg b{__shfl_xor_sync(0xffffffffu, a.m, off), __shfl_xor_sync(0xffffffffu, a.arg, off)};
    a = Better(a, b);
  }
  return a;
}

__device__ __forceinline__ float ShuffleSum(float s) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}

template <class T>
__global__ void __launch_bounds__(kThreads) RowStatsKernel(const T* logits, int64_t ld, int vocab, RowStats* out,
                                                             int64_t* next_token) {
  __shared__ MaxArg warp_max[kThreads / 32];
  __shared__ float warp_sum[kThreads / 32];
  __shared__ MaxArg row_max;
  const T* x = logits + blockIdx.x * ld;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  // Pass 1: max and first argmax. Chain c sees columns v = tid + (k*kChains + c)*kThreads,
  // each in increasing order, so "x > m" keeps a chain's first maximum.
  MaxArg c[kChains];
#pragma unroll
  for (int i = 0; i < kChains; ++i) c[i] = MaxArg{kNegInf, INT_MAX};
  int v = threadIdx.x;
  for (; v + (kChains - 1) * kThreads < vocab; v += kChains * kThreads) {
    float xs[kChains];
#pragma unroll
    for (int i = 0; i < kChains; ++i) xs[i] = ToF(x[v + i * kThreads]);
#pragma unroll
    for (int i = 0; i < kChains; ++i) {
      if (xs[i] > c[i].m) c[i] = MaxArg{xs[i], v + i * kThreads};
    }
  }
  for (; v < vocab; v += kThreads) {
    const float xv = ToF(x[v]);
    if (xv > c[0].m) c[0] = MaxArg{xv, v};
  }
  MaxArg a = Better(Better(c[0], c[1]), Better(c[2], c[3]));
  a = ShuffleMax(a);
  if (lane == 0) warp_max[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = ShuffleMax(warp_max[lane]);  // kThreads / 32 == 32 warps: one per lane
    if (lane == 0) row_max = a;
  }
  __syncthreads();
  const MaxArg best = row_max;

  // Pass 2: sum of exp(x - max) (the row is in L2 now). A row of -inf has no terms.
  float s[kChains] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (best.m != kNegInf) {
    v = threadIdx.x;
    for (; v + (kChains - 1) * kThreads < vocab; v += kChains * kThreads) {
#pragma unroll
      for (int i = 0; i < kChains; ++i) s[i] += expf(ToF(x[v + i * kThreads]) - best.m);
    }
    for (; v < vocab; v += kThreads) s[0] += expf(ToF(x[v]) - best.m);
  }
  float sum = ShuffleSum((s[0] + s[1]) + (s[2] + s[3]));
  if (lane == 0) warp_sum[warp] = sum;
  __syncthreads();
  if (warp == 0) {
    sum = ShuffleSum(warp_sum[lane]);
    if (lane == 0) {
      RowStats r;
      r.max_logit = best.m;
      r.argmax = best.arg == INT_MAX ? 0 : best.arg;
      r.lse = best.m == kNegInf ? kNegInf : best.m + logf(sum);
      r.pad = 0;
      out[blockIdx.x] = r;
      if (next_token != nullptr) next_token[blockIdx.x] = r.argmax;
    }
  }
}

template <class T>
cudaError_t Run(const RowStatsParams& p, cudaStream_t stream) {
  RowStatsKernel<T><<<p.rows, kThreads, 0, stream>>>(static_cast<const T*>(p.logits), p.ld ? p.ld : p.vocab, p.vocab,
                                                     p.out, p.next_token);
  return cudaGetLastError();
}

}  // namespace
}  // namespace row_stats_detail

cudaError_t LaunchRowStats(const RowStatsParams& p, cudaStream_t stream) {
  using namespace row_stats_detail;
  if (RowStatsValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  switch (p.dtype) {
    case KvDType::kFp32: return Run<float>(p, stream);
    case KvDType::kBf16: return Run<__nv_bfloat16>(p, stream);
    case KvDType::kFp16: return Run<__half>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kvstream
