// Compile-time dispatch of the EntmaxKV kernels: the runtime (dtype, head_dim)
// pair becomes template arguments in one switch; unsupported pairs (see
// EntmaxKvSupports) return cudaErrorInvalidValue.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/common/pdl.cuh"
#include "kernels/entmax_kv/entmax_kv_layout.h"

namespace kvstream::entmax_detail {

// Calls f.template operator()<T, D>() for the built pairs.
template <class F>
cudaError_t DispatchTypeDim(KvDType dtype, int head_dim, F&& f) {
  if (dtype == KvDType::kBf16) {
    if (head_dim == 64) return f.template operator()<__nv_bfloat16, 64>();
    if (head_dim == 128) return f.template operator()<__nv_bfloat16, 128>();
  } else if (dtype == KvDType::kFp32) {
    if (head_dim == 64) return f.template operator()<float, 64>();
    if (head_dim == 128) return f.template operator()<float, 128>();
  }
  return cudaErrorInvalidValue;
}

// Calls f.template operator()<T>() for the built element types.
template <class F>
cudaError_t DispatchType(KvDType dtype, F&& f) {
  if (dtype == KvDType::kBf16) return f.template operator()<__nv_bfloat16>();
  if (dtype == KvDType::kFp32) return f.template operator()<float>();
  return cudaErrorInvalidValue;
}

// Programmatic dependent launch: kernels/common/pdl.cuh (LaunchPdl,
// PdlWaitForPrerequisite); it saves most of a launch gap between the short
// kernels of a decode step (K3 -> K7 -> merge).
using ::kvstream::LaunchPdl;

// Block-wide sum/max of one float (all threads get the result); `red` holds
// 32 floats of shared memory; ends with a barrier so red can be reused.
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <bool kMax>
__device__ float BlockReduce(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = kMax ? WarpMax(v) : WarpSum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  float r = red[0];
  for (int w = 1; w < warps; ++w) r = kMax ? fmaxf(r, red[w]) : r + red[w];
  __syncthreads();
  return r;
}

}  // namespace kvstream::entmax_detail
