// row_stats kernel (semantics: row_stats.h). One 1024-thread CTA per row:
// each thread keeps an online (max, first argmax, sum of exp(x - max)) over
// the columns it strides through (coalesced), then the CTA merges them with
// warp shuffles and one shared-memory round. The merge is exact for max and
// argmax (ties to the lower index); the sum is fp32, ~1e-6 relative.
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
constexpr float kNegInf = -__builtin_huge_valf();

struct Acc {
  float m;  // max so far (-inf: none)
  float s;  // sum of exp(x - m) over the values seen
  int arg;  // first index of m (INT_MAX: none)
};

__device__ __forceinline__ void Push(Acc& a, float x, int v) {
  if (x > a.m) {
    a.s = a.s * expf(a.m - x) + 1.0f;  // exp(-inf) = 0 for the first value
    a.m = x;
    a.arg = v;
  } else if (x != kNegInf) {
    a.s += expf(x - a.m);  // NaN stays NaN, as torch.logsumexp
  }
}

__device__ __forceinline__ Acc Merge(const Acc& a, const Acc& b) {
  Acc r;
  r.m = fmaxf(a.m, b.m);
  if (r.m == kNegInf) return Acc{kNegInf, 0.0f, min(a.arg, b.arg)};
  r.s = (a.m == kNegInf ? 0.0f : a.s * expf(a.m - r.m)) + (b.m == kNegInf ? 0.0f : b.s * expf(b.m - r.m));
  r.arg = a.m > b.m ? a.arg : (b.m > a.m ? b.arg : min(a.arg, b.arg));
  return r;
}

__device__ __forceinline__ Acc ShuffleMerge(Acc a) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    Acc b;
    b.m = __shfl_xor_sync(0xffffffffu, a.m, off);
    b.s = __shfl_xor_sync(0xffffffffu, a.s, off);
    b.arg = __shfl_xor_sync(0xffffffffu, a.arg, off);
    a = Merge(a, b);
  }
  return a;
}

template <class T>
__global__ void __launch_bounds__(kThreads) RowStatsKernel(const T* logits, int64_t ld, int vocab, RowStats* out,
                                                             int64_t* next_token) {
  __shared__ Acc warp_acc[kThreads / 32];
  const int row = blockIdx.x;
  const T* x = logits + row * ld;
  Acc a{kNegInf, 0.0f, INT_MAX};
  int v = threadIdx.x;
  // Four loads in flight per thread before the dependent online updates.
  for (; v + 3 * kThreads < vocab; v += 4 * kThreads) {
    const float x0 = ToF(x[v]), x1 = ToF(x[v + kThreads]), x2 = ToF(x[v + 2 * kThreads]),
                x3 = ToF(x[v + 3 * kThreads]);
    Push(a, x0, v);
    Push(a, x1, v + kThreads);
    Push(a, x2, v + 2 * kThreads);
    Push(a, x3, v + 3 * kThreads);
  }
  for (; v < vocab; v += kThreads) Push(a, ToF(x[v]), v);
  a = ShuffleMerge(a);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_acc[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = warp_acc[lane];  // kThreads / 32 == 32 warps: one per lane
    a = ShuffleMerge(a);
    if (lane == 0) {
      RowStats r;
      r.max_logit = a.m;
      r.argmax = a.arg == INT_MAX ? 0 : a.arg;
      r.lse = a.m == kNegInf ? kNegInf : a.m + logf(a.s);
      r.pad = 0;
      out[row] = r;
      if (next_token != nullptr) next_token[row] = r.argmax;
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
