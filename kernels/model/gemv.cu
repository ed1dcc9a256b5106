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

#include <algorithm>
#include <climits>
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

// Fused prologue (kNorm), per warp: inv_rms[m] = rsqrt(mean(src[m]²) + eps)
// with src = dtype(x + delta); warp 0 of CTA 0 also writes src to
// residual_out. The lanes sweep the row as the main loop does, so x stays in
// L1 for it; no barrier, so one warp's prologue never holds another's loads.
template <class T, int M>
__device__ __forceinline__ void NormStats(const GemvParams& p, int64_t xs, int lane, bool write_res,
                                          float (&inv_rms)[M]) {
  using V = Vec16<T>;
  const int chunks = p.in_features / 8;
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const uint4* x = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + m * xs);
    const uint4* d = p.delta ? reinterpret_cast<const uint4*>(static_cast<const T*>(p.delta) + m * p.in_features) : nullptr;
    uint4* res = write_res ? reinterpret_cast<uint4*>(static_cast<T*>(p.residual_out) + m * p.in_features) : nullptr;
    float ss = 0.f;
    // kStatsBatch chunks per lane loaded before any math: one L1/L2 round
    // trip per batch, not per chunk (K = 4096 is 16 chunks a lane: 4 round trips).
    constexpr int kStatsBatch = 4;
    for (int c0 = lane; c0 < chunks; c0 += 32 * kStatsBatch) {
      uint4 xv[kStatsBatch], dv[kStatsBatch];
#pragma unroll
      for (int i = 0; i < kStatsBatch; ++i) {
        const int c = c0 + 32 * i;
        xv[i] = c < chunks ? __ldg(x + c) : make_uint4(0, 0, 0, 0);
        dv[i] = d != nullptr && c < chunks ? __ldg(d + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int i = 0; i < kStatsBatch; ++i) {
        const int c = c0 + 32 * i;
        if (c >= chunks) break;
        float a[8];
        V::Load(xv[i], a);
        if (d != nullptr) {
          float b[8];
          V::Load(dv[i], b);
#pragma unroll
          for (int j = 0; j < 8; ++j) a[j] = RoundTo<T>(a[j] + b[j]);
          if (res != nullptr) res[c] = V::Store(a);
        }
#pragma unroll
        for (int j = 0; j < 8; ++j) ss += a[j] * a[j];
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    inv_rms[m] = rsqrtf(ss / static_cast<float>(p.in_features) + p.eps);
  }
}

// x' chunk c of row m: the normalised input (kNorm) or x itself.
template <class T, bool kNorm, int M>
__device__ __forceinline__ void InputChunk(const GemvParams& p, int64_t xs, int m, int c, const float (&inv_rms)[M],
                                           float (&xf)[8]) {
  using V = Vec16<T>;
  V::Load(__ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + m * xs) + c), xf);
  if constexpr (kNorm) {
    if (p.delta != nullptr) {
      float b[8];
      V::Load(__ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.delta) + m * p.in_features) + c), b);
#pragma unroll
      for (int j = 0; j < 8; ++j) xf[j] = RoundTo<T>(xf[j] + b[j]);
    }
    float g[8];
    V::Load(__ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.norm_weight)) + c), g);
#pragma unroll
    for (int j = 0; j < 8; ++j) xf[j] = RoundTo<T>(g[j] * RoundTo<T>(xf[j] * inv_rms[m]));
  }
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
    // SiluMulKernel's arithmetic (kernels/model/fused_ops.cu) on the rounded gate and up.
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (lane != m) continue;
      const float g = RoundTo<T>(val[0][m]), up = RoundTo<T>(val[1][m]);
      y[m * ys + unit] = FromF<T>(RoundTo<T>(g / (1.f + expf(-g))) * up);
    }
  } else if constexpr (kEpi == GemvEpilogue::kRope) {
    // RopeKernel's arithmetic on the rounded pair; heads past rope_heads (v) as they are.
    const int half = p.head_dim / 2;
    const int i = static_cast<int>(unit % half);
    const bool rotate = unit / half < p.rope_heads;
    const int64_t r1 = RowOf<kEpi, R>(p, unit, 0), r2 = RowOf<kEpi, R>(p, unit, 1);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (lane != m) continue;
      const float x1 = RoundTo<T>(val[0][m]), x2 = RoundTo<T>(val[1][m]);
      if (rotate) {
        float sn, cs;
        sincosf(static_cast<float>(p.positions[m]) * p.inv_freq[i], &sn, &cs);
        cs = RoundTo<T>(cs);
        sn = RoundTo<T>(sn);
        y[m * ys + r1] = FromF<T>(RoundTo<T>(x1 * cs) - RoundTo<T>(x2 * sn));
        y[m * ys + r2] = FromF<T>(RoundTo<T>(x2 * cs) + RoundTo<T>(x1 * sn));
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

// Persistent warps: the grid is at most what fits on the GPU at once and
// each warp takes units unit0, unit0 + stride, ...; so the prologue (norm
// statistics) is paid once per warp, not once per unit, and the next unit's
// first weight loads are issued before this unit's reduction and stores.
template <class T, int M, int R, int U, bool kNorm, GemvEpilogue kEpi>
__global__ void __launch_bounds__(kWarps * 32, kNorm ? 3 : 4) GemvKernel(GemvParams p) {
  static_assert(kEpi == GemvEpilogue::kNone || R == 2, "paired epilogues give a warp exactly two rows");
  using V = Vec16<T>;
  PdlLaunchDependents();  // the kernel after may be scheduled; it waits for this grid
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t units = UnitCount<kEpi, R>(p);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarps;
  int64_t unit = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const int chunks = p.in_features / 8;  // 16-byte chunks per row
  const int64_t xs = p.x_stride ? p.x_stride : p.in_features;
  const int64_t ys = p.y_stride ? p.y_stride : (kEpi == GemvEpilogue::kSiluMul ? p.out_features / 2 : p.out_features);

  const uint4* wrow[R];
  auto set_rows = [&](int64_t u) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t row = min(RowOf<kEpi, R>(p, u < units ? u : 0, r), static_cast<int64_t>(p.out_features) - 1);
      wrow[r] = reinterpret_cast<const uint4*>(static_cast<const T*>(p.w) + row * p.in_features);
    }
  };
  // Weight loads run ahead of the math in batches of U chunks per row.
  uint4 wv[U][R];
  auto load_batch = [&](int base, bool live) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + u * 32;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        wv[u][r] = live && c < chunks ? LoadStreaming(wrow[r] + c) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  // The first batch goes out before waiting on the kernel that writes x
  // (programmatic dependent launch, kernels/common/pdl.cuh): weights are
  // never written, so they may be read while it drains.
  set_rows(unit);
  load_batch(lane, unit < units);
  PdlWaitForPrerequisite();
  float inv_rms[M];
  if constexpr (kNorm) {
    const bool write_res = blockIdx.x == 0 && warp == 0 && p.delta != nullptr;
    if (unit < units || write_res) NormStats<T, M>(p, xs, lane, write_res, inv_rms);
  }
  for (; unit < units; unit += stride) {
    float acc[R][M];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) acc[r][m] = 0.f;
    for (int base = lane; base < chunks;) {
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = base + u * 32;
        if (c >= chunks) break;
#pragma unroll
        for (int m = 0; m < M; ++m) {
          float xf[8];
          InputChunk<T, kNorm, M>(p, xs, m, c, inv_rms, xf);
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
      if (base < chunks) load_batch(base, true);
    }
    // The next unit's first batch, in flight while this one reduces and stores.
    set_rows(unit + stride);
    load_batch(lane, unit + stride < units);
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[r][m] += __shfl_xor_sync(0xffffffffu, acc[r][m], o);
    StoreUnit<T, M, R, kEpi>(p, unit, lane, ys, acc);
  }
}

// CTAs of this kernel that fit on the device at once (queried once per
// instantiation and device; host-side attribute queries, no sync).
template <class Kernel>
int64_t ResidentBlocks(Kernel kernel) {
  constexpr int kMaxDevices = 16;
  static int64_t cached[kMaxDevices] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= kMaxDevices) return INT64_MAX;
  if (cached[dev] == 0) {
    int sms = 0, per_sm = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, 0) != cudaSuccess ||
        sms <= 0 || per_sm <= 0) {
      return INT64_MAX;
    }
    cached[dev] = static_cast<int64_t>(sms) * per_sm;
  }
  return cached[dev];
}

template <class T, int M, bool kNorm, GemvEpilogue kEpi>
cudaError_t LaunchShape(const GemvParams& p, cudaStream_t stream) {
  constexpr int R = M <= 2 ? 2 : 4;
  constexpr int U = M <= 2 ? 4 : 2;
  auto kernel = GemvKernel<T, M, R, U, kNorm, kEpi>;
  const int64_t blocks = std::min((UnitCount<kEpi, R>(p) + kWarps - 1) / kWarps, ResidentBlocks(kernel));
  return LaunchPdl(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), 0, stream, p);
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
                        reinterpret_cast<uintptr_t>(p.delta) | reinterpret_cast<uintptr_t>(p.residual_out);
  if (any % 16 != 0) return cudaErrorMisalignedAddress;
  return p.dtype == KvDType::kBf16 ? LaunchT<__nv_bfloat16>(p, stream) : LaunchT<__half>(p, stream);
}

}  // namespace kvstream
