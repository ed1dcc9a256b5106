// Tensor-core path of the skinny GEMV (kernels/model/gemv.h), where
// GemvUsesTensorCores(p): 3..8 rows of x, no prologue or epilogue: y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias). Included
// by gemv.cu only.
//
// Why: with M tokens every weight byte feeds M FMAs; on CUDA cores (GemvKernel)
// the conversions and FMAs of M = 8 keep it at ~55-65% of the copy bandwidth
// (bench/results/gpu/gemv_bench_h100.json), below cuBLAS. One mma.m16n8k16
// takes 16 weight rows × 16 k against the 8 token columns, so the math is
// free and the kernel is the weight stream again.
//
// Mapping: a CTA owns 16 weight rows; its 8 warps split K in 32-wide steps,
// round robin (warp w: steps w, w + 8, ...), and add their 16×8 fp32 tiles
// through shared memory at the end. Lane (g, t) = (lane / 4, lane % 4) loads
// 16 bytes of rows g and g + 8 and of token g's x at k = step·32 + 8t: a
// weight row's 32 k of a step are 64 contiguous bytes. The dot product does
// not care in which order k is summed, so the mma's k slots {2t, 2t+1, 2t+8,
// 2t+9} take physical k 8t + {0,1,2,3} in the first mma and 8t + {4..7} in the
// second, for A and B alike: the loaded registers are the fragments, no shuffle.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/common/device_math.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/model/gemv.h"

namespace kvstream::gemv_mma {

constexpr int kWarps = 8;
constexpr int kRows = 16;      // weight rows per CTA (the mma's M)
constexpr int kStepK = kGemvMmaStepK;  // k per warp step: two m16n8k16
constexpr int kUnroll = 4;     // steps whose loads are in flight together
constexpr int kMaxTokens = 8;  // the mma's N
static_assert(kGemvMaxRows <= kMaxTokens, "one n-tile holds every row of x");

// c += A(16×16, row-major) · B(16×8, col-major), fp32 accumulate.
template <class T>
__device__ __forceinline__ void Mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

template <class T>
__device__ __forceinline__ float ToFloat(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return __half2float(v);
  }
}

template <class T>
__device__ __forceinline__ T FromFloat(float v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return __float2half_rn(v);
  }
}

// One CTA: rows [16·blockIdx.x, +16) of y for all M tokens.
template <class T>
__global__ void __launch_bounds__(kWarps * 32) GemvMmaKernel(GemvParams p) {
  __shared__ float tiles[kWarps][kRows][kMaxTokens];
  PdlLaunchDependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t last = p.out_features - 1;
  const int64_t K = p.in_features;
  const T* w = static_cast<const T*>(p.w);
  const uint4* w_lo = reinterpret_cast<const uint4*>(w + min(row0 + g, last) * K + 8 * t);
  const uint4* w_hi = reinterpret_cast<const uint4*>(w + min(row0 + g + 8, last) * K + 8 * t);
  const int64_t xs = p.x_stride ? p.x_stride : K;
  const bool has_token = g < p.rows;  // lanes of tokens past M feed zeros
  const uint4* xg = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + (has_token ? g : 0) * xs + 8 * t);
  const int steps = static_cast<int>(K / kStepK);
  constexpr int kStepChunks = kStepK / 8;  // uint4 per row per step

  float c[4] = {0.f, 0.f, 0.f, 0.f};
  // Two register buffers of kUnroll steps: the loads of batch i + 1 are issued
  // before batch i's mma, so a warp keeps 2 * kUnroll steps (8 KB) in flight.
  // NOTE(gemv): with one buffer the loads went out only after the mma had
  // waited for the batch before (6a534a0: M = 8 down 79% of copy vs cuBLAS 87%).
  constexpr int kStride = kUnroll * kWarps;  // steps between a warp's batches
  uint4 a_lo[kUnroll], a_hi[kUnroll], b_lo[kUnroll], b_hi[kUnroll];
  auto load = [&](uint4 (&lo)[kUnroll], uint4 (&hi)[kUnroll], int s0) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int s = s0 + u * kWarps;
      const bool ok = s < steps;
      lo[u] = ok ? LoadStreaming(w_lo + s * kStepChunks) : make_uint4(0, 0, 0, 0);
      hi[u] = ok ? LoadStreaming(w_hi + s * kStepChunks) : make_uint4(0, 0, 0, 0);
    }
  };
  auto math = [&](const uint4 (&lo)[kUnroll], const uint4 (&hi)[kUnroll], int s0) {
    uint4 xv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int s = s0 + u * kWarps;
      xv[u] = has_token && s < steps ? __ldg(xg + s * kStepChunks) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      Mma16816<T>(c, lo[u].x, hi[u].x, lo[u].y, hi[u].y, xv[u].x, xv[u].y);
      Mma16816<T>(c, lo[u].z, hi[u].z, lo[u].w, hi[u].w, xv[u].z, xv[u].w);
    }
  };
  // Weights are never written: the first batch goes out before waiting on
  // the kernel that writes x (programmatic dependent launch).
  load(a_lo, a_hi, warp);
  PdlWaitForPrerequisite();
  for (int s0 = warp; s0 < steps; s0 += 2 * kStride) {
    if (s0 + kStride < steps) load(b_lo, b_hi, s0 + kStride);
    math(a_lo, a_hi, s0);
    if (s0 + kStride >= steps) break;
    if (s0 + 2 * kStride < steps) load(a_lo, a_hi, s0 + 2 * kStride);
    math(b_lo, b_hi, s0 + kStride);
  }

  // C fragment: c0, c1 = (row g, tokens 2t, 2t+1); c2, c3 = (row g + 8, same tokens).
  tiles[warp][g][2 * t] = c[0];
  tiles[warp][g][2 * t + 1] = c[1];
  tiles[warp][g + 8][2 * t] = c[2];
  tiles[warp][g + 8][2 * t + 1] = c[3];
  __syncthreads();
  if (threadIdx.x >= kRows * kMaxTokens) return;
  const int r = threadIdx.x / kMaxTokens, m = threadIdx.x % kMaxTokens;
  const int64_t row = row0 + r;
  if (m >= p.rows || row > last) return;
  float sum = 0.f;
#pragma unroll
  for (int v = 0; v < kWarps; ++v) sum += tiles[v][r][m];
  if (p.bias != nullptr) sum += ToFloat(static_cast<const T*>(p.bias)[row]);
  const int64_t ys = p.y_stride ? p.y_stride : p.out_features;
  static_cast<T*>(p.y)[m * ys + row] = FromFloat<T>(sum);
}

template <class T>
cudaError_t Launch(const GemvParams& p, cudaStream_t stream) {
  const int64_t blocks = (static_cast<int64_t>(p.out_features) + kRows - 1) / kRows;
  return LaunchPdl(GemvMmaKernel<T>, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), 0, stream, p);
}

}  // namespace kvstream::gemv_mma
