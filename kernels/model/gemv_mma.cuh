// Tensor-core path of the skinny GEMV (kernels/model/gemv.h), where
// GemvUsesTensorCores(p): 3..8 rows of x, no prologue or epilogue:
// y[M, N] = x[M, K] · W[N, K]ᵀ (+ bias). Included by gemv.cu only.
//
// Why: with M tokens every weight byte feeds M FMAs; on CUDA cores (GemvKernel)
// the conversions and FMAs of M = 8 keep it at ~55-80% of the copy bandwidth
// (bench/results/gpu/gemv_bench_h100.json). One mma.m16n8k16 takes 16 weight
// rows × 16 k against the 8 token columns, so the math is free and the kernel
// is the weight stream again.
//
// Mapping: a CTA owns 16 weight rows; its kWarps warps split K in stages of
// kStageK, round robin (warp w: stages w, w + kWarps, ...), and add their
// 16×8 fp32 tiles through shared memory at the end. Each warp streams its
// stages through its own shared-memory ring with 16-byte cp.async, one
// instruction copying 256 contiguous bytes of two rows, kStages - 1 stages in
// flight: the bytes in flight live in shared memory, not registers (the two
// register-staged versions, 6a534a0 and 0c6d60b, held 4-8 KB per warp and
// lost to cuBLAS: bench/results/gpu/gemv_mma_*_h100.json).
// Fragments: lane (g, t) = (lane / 4, lane % 4) reads 16 bytes of rows g and
// g + 8 at k = step·32 + 8t and 16 bytes of token g's x there. The dot product
// does not care in which order k is summed, so the mma's k slots {2t, 2t+1,
// 2t+8, 2t+9} take physical k 8t + {0..3} in the first mma and 8t + {4..7} in
// the second, for A and B alike: the loaded registers are the fragments. Ring
// rows are 256 bytes; chunk c of row r sits at c ^ 4(r & 1), so the 8 lanes of
// a shared-memory phase (rows 2p, 2p + 1, t = 0..3) hit 8 distinct bank groups.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/common/cp_async.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/cuda_check.h"
#include "kernels/model/gemv.h"

namespace kvstream::gemv_mma {

constexpr int kWarps = 4;
constexpr int kRows = 16;                            // weight rows per CTA (the mma's M)
constexpr int kStepK = kGemvMmaStepK;                // k per mma pair
constexpr int kStageSteps = 4;                       // steps per ring stage: 128 k, 256 B a row
constexpr int kStages = 4;                           // ring depth per warp (stages in flight = kStages - 1)
constexpr int kRowChunks = kStageSteps * kStepK / 8; // 16-byte chunks of a row in a stage
constexpr int kStageChunks = kRows * kRowChunks;     // 256 (4 KB)
constexpr int kCopiesPerLane = kStageChunks / 32;    // 8
constexpr int kSmemBytes = kWarps * kStages * kStageChunks * 16;  // 64 KB: 3 CTAs per SM
constexpr int kMaxTokens = 8;                        // the mma's N
static_assert(kGemvMaxRows <= kMaxTokens, "one n-tile holds every row of x");
static_assert(kRowChunks == 16, "copy mapping: lanes 0-15 and 16-31 each take one row's 16 chunks");

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

// Ring slot of row r, chunk c (swizzled, see the header).
__device__ __forceinline__ int Slot(int r, int c) { return r * kRowChunks + (c ^ ((r & 1) << 2)); }

// One CTA: rows [16·blockIdx.x, +16) of y for all M tokens.
template <class T>
__global__ void __launch_bounds__(kWarps * 32) GemvMmaKernel(GemvParams p) {
  extern __shared__ __align__(16) uint4 ring_all[];
  __shared__ float tiles[kWarps][kRows][kMaxTokens];
  PdlLaunchDependents();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int64_t last = p.out_features - 1;
  const int64_t K = p.in_features;
  const int k_chunks = static_cast<int>(K / 8);
  const int steps = static_cast<int>(K / kStepK);
  const int stages = (steps + kStageSteps - 1) / kStageSteps;
  const int mine = stages > warp ? (stages - warp + kWarps - 1) / kWarps : 0;
  uint4* ring = ring_all + warp * kStages * kStageChunks;

  // Copy mapping: instruction i moves rows 2i (lanes 0-15) and 2i + 1 (16-31),
  // lane % 16 = the row's chunk: 256 contiguous bytes per row.
  const int half = lane >> 4, cchunk = lane & 15;
  const T* w = static_cast<const T*>(p.w);
  auto issue = [&](int j, int slot) {  // this warp's j-th stage into ring slot `slot`
    const int kc = (warp + j * kWarps) * kRowChunks + cchunk;  // global 16-byte chunk of the row
    const bool ok = kc < k_chunks;
    uint4* dst = ring + slot * kStageChunks;
#pragma unroll
    for (int i = 0; i < kCopiesPerLane; ++i) {
      const int r = 2 * i + half;
      const int64_t row = min(row0 + r, last);
      CpAsync16(dst + Slot(r, cchunk), w + row * K + static_cast<int64_t>(ok ? kc : 0) * 8, ok);
    }
  };
#pragma unroll
  for (int j = 0; j < kStages - 1; ++j) {
    if (j < mine) issue(j, j);
    CpAsyncCommit();
  }
  // Weights are never written: their first stages went out before waiting on
  // the kernel that writes x (programmatic dependent launch).
  PdlWaitForPrerequisite();

  const int64_t xs = p.x_stride ? p.x_stride : K;
  const bool has_token = g < p.rows;  // lanes of tokens past M feed zeros
  const uint4* xg = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + (has_token ? g : 0) * xs + 8 * t);
  float c[4] = {0.f, 0.f, 0.f, 0.f};
  for (int j = 0; j < mine; ++j) {
    __syncwarp();  // every lane is done reading the slot the next issue refills
    if (j + kStages - 1 < mine) issue(j + kStages - 1, (j + kStages - 1) % kStages);
    CpAsyncCommit();
    CpAsyncWait<kStages - 1>();
    __syncwarp();  // the other lanes' copies of stage j have landed too
    const uint4* st = ring + (j % kStages) * kStageChunks;
    const int s0 = (warp + j * kWarps) * kStageSteps;
    uint4 xv[kStageSteps];
#pragma unroll
    for (int u = 0; u < kStageSteps; ++u) {
      xv[u] = has_token && s0 + u < steps ? __ldg(xg + (s0 + u) * (kStepK / 8)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kStageSteps; ++u) {
      const uint4 lo = st[Slot(g, 4 * u + t)], hi = st[Slot(g + 8, 4 * u + t)];
      Mma16816<T>(c, lo.x, hi.x, lo.y, hi.y, xv[u].x, xv[u].y);
      Mma16816<T>(c, lo.z, hi.z, lo.w, hi.w, xv[u].z, xv[u].w);
    }
  }
  CpAsyncWait<0>();

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
  KV_CUDA_CHECK(cudaFuncSetAttribute(GemvMmaKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
  return LaunchPdl(GemvMmaKernel<T>, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), kSmemBytes, stream, p);
}

}  // namespace kvstream::gemv_mma
