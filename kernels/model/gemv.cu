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
#include "kernels/model/fused_ops_math.cuh"
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

// Fused prologue (kNorm): x' = dtype(w_norm · dtype(src · rsqrt(mean(src²) + eps)))
// with src = dtype(x + delta), into shared memory [M][K] fp32; CTA 0 writes
// src to residual_out. Every thread of the CTA takes part (one barrier for the
// row sums, one before the main loop). Each thread rescales exactly the
// chunks it wrote in pass 1, so pass 2 needs no barrier of its own and reads
// the norm weight as 16-byte vectors.
template <class T, int M>
__device__ __forceinline__ void NormPrologue(const GemvParams& p, int64_t xs, float* xsm) {
  using V = Vec16<T>;
  const int chunks = p.in_features / 8;
  const bool write_res = blockIdx.x == 0 && p.delta != nullptr;
  __shared__ float partial[kWarps][M];
  float ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const uint4* x = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + m * xs);
    const uint4* d = p.delta ? reinterpret_cast<const uint4*>(static_cast<const T*>(p.delta) + m * p.in_features) : nullptr;
    uint4* res = write_res ? reinterpret_cast<uint4*>(static_cast<T*>(p.residual_out) + m * p.in_features) : nullptr;
    ss[m] = 0.f;
    for (int c = threadIdx.x; c < chunks; c += kWarps * 32) {
      float a[8];
      V::Load(x[c], a);
      if (d != nullptr) {
        float b[8];
        V::Load(d[c], b);
#pragma unroll
        for (int j = 0; j < 8; ++j) a[j] = RoundTo<T>(a[j] + b[j]);
        if (res != nullptr) res[c] = V::Store(a);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) ss[m] += a[j] * a[j];
      float4* dst = reinterpret_cast<float4*>(xsm + m * p.in_features + c * 8);
      dst[0] = make_float4(a[0], a[1], a[2], a[3]);
      dst[1] = make_float4(a[4], a[5], a[6], a[7]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss[m] += __shfl_xor_sync(0xffffffffu, ss[m], o);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5][m] = ss[m];
  }
  __syncthreads();
  const uint4* wn = static_cast<const uint4*>(p.norm_weight);
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float t = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) t += partial[w][m];
    const float inv_rms = rsqrtf(t / static_cast<float>(p.in_features) + p.eps);
    for (int c = threadIdx.x; c < chunks; c += kWarps * 32) {
      float g[8];
      V::Load(__ldg(wn + c), g);
      float4* v = reinterpret_cast<float4*>(xsm + m * p.in_features + c * 8);
      const float4 lo = v[0], hi = v[1];
      const float a[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      float r[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) r[j] = RoundTo<T>(g[j] * RoundTo<T>(a[j] * inv_rms));
      v[0] = make_float4(r[0], r[1], r[2], r[3]);
      v[1] = make_float4(r[4], r[5], r[6], r[7]);
    }
  }
  __syncthreads();
}

// Weight row r of the warp with unit index u (a row group, or a pair).
template <GemvEpilogue kEpi, int R>
__device__ __forceinline__ int64_t RowOf(const GemvParams& p, int64_t u, int r) {
  if constexpr (kEpi == GemvEpilogue::kSiluMul) {
    return u + r * (p.out_features / 2);  // gate row u, up row u + N/2
  } else if constexpr (kEpi == GemvEpilogue::kRope) {
    const int half = p.head_dim / 2;
    return (u / half) * p.head_dim + u % half + r * half;  // x1, x2 of one rotation pair
  } else {
    return u * R + r;
  }
}

// Units (a warp's R rows) of a launch: row groups, or pairs under an epilogue.
template <GemvEpilogue kEpi, int R>
__host__ __device__ __forceinline__ int64_t UnitCount(const GemvParams& p) {
  return kEpi == GemvEpilogue::kNone ? (p.out_features + R - 1) / R : p.out_features / 2;
}

// The warp's R rows and bias-added, dtype-rounded outputs of one unit go
// through the epilogue here (lane m writes token m's values).
template <class T, int M, int R, GemvEpilogue kEpi>
__device__ __forceinline__ void StoreUnit(const GemvParams& p, int64_t unit, int lane, int64_t ys,
                                          const float (&acc)[R][M]) {
  float val[R][M];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = min(RowOf<kEpi, R>(p, unit, r), static_cast<int64_t>(p.out_features) - 1);
    const float b = p.bias != nullptr ? ToF<T>(static_cast<const T*>(p.bias)[row]) : 0.f;
#pragma unroll
    for (int m = 0; m < M; ++m) val[r][m] = acc[r][m] + b;
  }
  T* y = static_cast<T*>(p.y);
  if constexpr (kEpi == GemvEpilogue::kSiluMul) {
    // SiluMulKernel's arithmetic (SiluMulValue) on the rounded gate and up.
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (lane != m) continue;
      const float g = RoundTo<T>(val[0][m]), up = RoundTo<T>(val[1][m]);
      y[m * ys + unit] = FromF<T>(SiluMulValue<T>(g, up));
    }
  } else if constexpr (kEpi == GemvEpilogue::kRope) {
    // RopeKernel's arithmetic (RopePair) on the rounded pair; heads past rope_heads (v) as they are.
    const int half = p.head_dim / 2;
    const int i = static_cast<int>(unit % half);
    const bool rotate = unit / half < p.rope_heads;
    const int64_t r1 = RowOf<kEpi, R>(p, unit, 0), r2 = RowOf<kEpi, R>(p, unit, 1);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (lane != m) continue;
      const float x1 = RoundTo<T>(val[0][m]), x2 = RoundTo<T>(val[1][m]);
      if (rotate) {
        float y1, y2;
        RopePair<T>(x1, x2, p.positions[m], p.inv_freq[i], y1, y2);
        y[m * ys + r1] = FromF<T>(y1);
        y[m * ys + r2] = FromF<T>(y2);
      } else {
        y[m * ys + r1] = FromF<T>(x1);
        y[m * ys + r2] = FromF<T>(x2);
      }
    }
  } else {
    // Lane (r·M + m) % 32 writes output (row0 + r, m): the R·M results spread over lanes.
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = unit * R + r;
      if (row >= p.out_features) continue;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        if (lane == (r * M + m) % 32) y[m * ys + row] = FromF<T>(val[r][m]);
      }
    }
  }
}

template <class T, int M, int R, int U, bool kNorm, GemvEpilogue kEpi>
__global__ void __launch_bounds__(kWarps * 32) GemvKernel(GemvParams p) {
  static_assert(kEpi == GemvEpilogue::kNone || R == 2, "paired epilogues give a warp exactly two rows");
  using V = Vec16<T>;
  extern __shared__ float xsm[];  // kNorm: x' [M][K] fp32
  PdlLaunchDependents();  // the kernel after may be scheduled; it waits for this grid
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool active = unit < UnitCount<kEpi, R>(p);  // no early return: the prologue has barriers
  const int chunks = p.in_features / 8;  // 16-byte chunks per row
  const int64_t xs = p.x_stride ? p.x_stride : p.in_features;
  const int64_t ys = p.y_stride ? p.y_stride : (kEpi == GemvEpilogue::kSiluMul ? p.out_features / 2 : p.out_features);

  const uint4* wrow[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t row = min(RowOf<kEpi, R>(p, active ? unit : 0, r), static_cast<int64_t>(p.out_features) - 1);
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
      for (int r = 0; r < R; ++r) {
        wv[u][r] = active && c < chunks ? LoadStreaming(wrow[r] + c) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  load_batch(lane);
  PdlWaitForPrerequisite();
  if constexpr (kNorm) NormPrologue<T, M>(p, xs, xsm);
  if (!active) return;
  for (int base = lane; base < chunks;) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * 32;
      if (c >= chunks) break;
#pragma unroll
      for (int m = 0; m < M; ++m) {
        float xf[8];
        if constexpr (kNorm) {
          const float4* s4 = reinterpret_cast<const float4*>(xsm + m * p.in_features + c * 8);
          const float4 lo = s4[0], hi = s4[1];
          xf[0] = lo.x; xf[1] = lo.y; xf[2] = lo.z; xf[3] = lo.w;
          xf[4] = hi.x; xf[5] = hi.y; xf[6] = hi.z; xf[7] = hi.w;
        } else {
          V::Load(__ldg(xrow[m] + c), xf);
        }
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
  StoreUnit<T, M, R, kEpi>(p, unit, lane, ys, acc);
}

template <class T, int M, bool kNorm, GemvEpilogue kEpi>
cudaError_t LaunchShape(const GemvParams& p, cudaStream_t stream) {
  constexpr int R = M <= 2 ? 2 : 4;
  constexpr int U = M <= 2 ? 4 : 2;
  const int64_t blocks = (UnitCount<kEpi, R>(p) + kWarps - 1) / kWarps;
  const size_t smem = kNorm ? static_cast<size_t>(M) * p.in_features * sizeof(float) : 0;
  return LaunchPdl(GemvKernel<T, M, R, U, kNorm, kEpi>, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), smem,
                   stream, p);
}

template <class T, int M, bool kNorm>
cudaError_t LaunchEpi(const GemvParams& p, cudaStream_t stream) {
  if constexpr (M <= kGemvEpilogueMaxRows) {
    if (p.epilogue == GemvEpilogue::kSiluMul) return LaunchShape<T, M, kNorm, GemvEpilogue::kSiluMul>(p, stream);
    if (p.epilogue == GemvEpilogue::kRope) return LaunchShape<T, M, kNorm, GemvEpilogue::kRope>(p, stream);
  }
  return LaunchShape<T, M, kNorm, GemvEpilogue::kNone>(p, stream);
}

// Rows per warp for M tokens: 2 at M = 1..2 (more loads in flight), 4 above
// (x's L1 reads per weight byte = M / R stays ≤ 2).
template <class T, int M>
cudaError_t LaunchM(const GemvParams& p, cudaStream_t stream) {
  return p.norm_weight != nullptr ? LaunchEpi<T, M, true>(p, stream) : LaunchEpi<T, M, false>(p, stream);
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
  const uintptr_t any = reinterpret_cast<uintptr_t>(p.x) | reinterpret_cast<uintptr_t>(p.w) |
                        reinterpret_cast<uintptr_t>(p.delta) | reinterpret_cast<uintptr_t>(p.residual_out) |
                        reinterpret_cast<uintptr_t>(p.norm_weight);
  if (any % 16 != 0) return cudaErrorMisalignedAddress;
  return p.dtype == KvDType::kBf16 ? LaunchT<__nv_bfloat16>(p, stream) : LaunchT<__half>(p, stream);
}

}  // namespace kvstream
