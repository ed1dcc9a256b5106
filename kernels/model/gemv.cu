// CUDA side of kernels/model/gemv.h.
//
// One warp owns R weight rows at a time and sweeps K in 16-byte chunks, lane
// c reading chunks c, c + 32, ...; U chunks per row are loaded before any
// math so each lane keeps R·U loads in flight (HBM wants ~32 KB in flight
// per SM to reach its bandwidth). Weights are read once, bypassing L1
// (ld.global.nc.L1::no_allocate); x is small and re-read by every warp, so it
// stays in L1. R grows with M so that x's L1 traffic per weight byte (M/R
// uint4 loads per W uint4) stays within the L1's bandwidth. Launched with
// programmatic dependent launch: the first weight loads overlap the tail of
// the kernel before (see kernels/common/pdl.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/common/device_math.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/model/gemv.h"

namespace kvstream {
namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

template <class T, int M, int R, int U>
__global__ void __launch_bounds__(kWarps * 32) GemvKernel(GemvParams p) {
  using V = Vec16<T>;
  PdlLaunchDependents();  // the norm / rope after may be scheduled; they wait for this grid
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * R;
  if (row0 >= p.out_features) return;
  const int chunks = p.in_features / 8;  // 16-byte chunks per row
  const int64_t xs = p.x_stride ? p.x_stride : p.in_features;
  const int64_t ys = p.y_stride ? p.y_stride : p.out_features;

  const uint4* wrow[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = min(row0 + r, static_cast<int64_t>(p.out_features) - 1);  // tail rows re-read the last
    wrow[r] = reinterpret_cast<const uint4*>(static_cast<const T*>(p.w) + row * p.in_features);
  }
  const uint4* xrow[M];
#pragma unroll
  for (int m = 0; m < M; ++m) xrow[m] = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + m * xs);

  float acc[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.f;

  // The first batch of weight loads goes out before waiting on the kernel
  // that writes x (programmatic dependent launch, kernels/common/pdl.cuh):
  // weights are never written, so they may be read while it drains.
  uint4 wv[U][R];
  auto load_batch = [&](int base) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * 32;
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = c < chunks ? LoadStreaming(wrow[r] + c) : make_uint4(0, 0, 0, 0);
    }
  };
  load_batch(lane);
  PdlWaitForPrerequisite();
  for (int base = lane; base < chunks;) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * 32;
      if (c >= chunks) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float xf[8];
        V::Load(__ldg(xrow[m] + c), xf);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float wf[8];
          V::Load(wv[u][r], wf);
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[r][m] = fmaf(wf[j], xf[j], acc[r][m]);
        }
      }
    }
    base += 32 * U;
    if (base < chunks) load_batch(base);
  }

#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m)
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);

  // Lane (r·M + m) % 32 writes output (row0 + r, m): the R·M results spread over lanes.
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = row0 + r;
    if (row >= p.out_features) continue;
    const float b = p.bias != nullptr ? ToF<T>(static_cast<const T*>(p.bias)[row]) : 0.f;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (lane == (r * M + m) % 32) static_cast<T*>(p.y)[m * ys + row] = FromF<T>(acc[r][m] + b);
    }
  }
}

// Rows per warp for M tokens: 2 at M = 1..2 (more loads in flight), 4 above
// (x's L1 reads per weight byte = M / R stays ≤ 2).
template <class T, int M>
cudaError_t LaunchM(const GemvParams& p, cudaStream_t stream) {
  constexpr int R = M <= 2 ? 2 : 4;
  constexpr int U = M <= 2 ? 4 : 2;
  const int64_t rows_per_block = static_cast<int64_t>(kWarps) * R;
  const int64_t blocks = (p.out_features + rows_per_block - 1) / rows_per_block;
return LaunchPdl(GemvKernel<T, M, R, U>, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), 0, stream, p);
}

template <class T>
cudaError_t LaunchT(const GemvParams& p, cudaStream_t stream) {
  switch (p.rows) {
    case 1: return LaunchM<T, 1>(p, stream);
    case 2: return LaunchM<T, 2>(p, stream);
    case 3: return LaunchM<T, 3>(p, stream);
    case 4: return LaunchM<T, 4>(p, stream);
    case 5: return LaunchM<T, 5>(p, stream);
    case 6: return LaunchM<T, 6>(p, stream);
    case 7: return LaunchM<T, 7>(p, stream);
    default: return LaunchM<T, 8>(p, stream);
  }
}

}  // namespace

cudaError_t LaunchGemv(const GemvParams& p, cudaStream_t stream) {
  if (GemvValidate(p) != nullptr) return cudaErrorInvalidValue;
  if ((reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.w)) % 16 != 0) return cudaErrorMisalignedAddress;
  return p.dtype == KvDType::kBf16 ? LaunchT<__nv_bfloat16>(p, stream) : LaunchT<__half>(p, stream);
}

}  // namespace kvstream
