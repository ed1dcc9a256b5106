// Decode form of akv_score_update (one query row, M = 1, G = Hq / Hkv <=
// kScoreDecodeMaxGroup): the same sums as ScoreRowsKernel (akv_score.cu),
// laid out so the K reads are coalesced. Included by akv_score.cu only.
//
// Why: ScoreRowsKernel gives each thread a whole (row, KV head) slice and walks
// its D dims in 8-element chunks, so a warp's loads stride 256 bytes apart and
// every chunk waits on the one before; at the default tiers (1024 hot bf16 +
// 2048 warm 4-bit rows, Hkv 8, D 128) it took 22 us a layer for 3.3 MB, the
// largest AKV kernel of a decode step (ncu, bench/results/gpu/
// ncu_akv_step_s16_h100.json). Here a warp is one KV head and its 32 lanes
// split the D dims (D/32 each): one row's slice is one coalesced load per
// warp (hot bf16 D 128: 8 bytes a lane; warm 4-bit: 2 bytes), the G dot
// products are finished by butterfly shuffles, and a CTA of Hkv warps takes
// kScoreDecodeRows rows, loading all of them before it computes.
//
// Numerics: per (row, KV head) the G heads' exp(z - lse) are added in head
// order, then the Hkv partials in KV-head order (fixed: deterministic); the
// dot products are summed lane-wise then by the shuffle tree (fp32), where
// ScoreRowsKernel sums them in dim order: equal within fp32 rounding, and
// both within the CUDA test's bound of the twin's double sums.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/akv/akv_device.cuh"
#include "kernels/akv/akv_manage.h"

namespace kvstream::akv_detail {

constexpr int kScoreDecodeMaxGroup = 8;  // query heads per KV head held in registers
constexpr int kScoreDecodeRows = 4;      // tier rows per CTA
constexpr int kScoreDecodeMaxKvHeads = 16;  // one warp per KV head (more: ScoreRowsKernel)

// The lane's N = D/32 elements of a K row as floats (hot tier, element type T).
template <class T, int N>
__device__ __forceinline__ void LoadLaneElems(const T* p, float* f) {
  constexpr int kBytes = N * static_cast<int>(sizeof(T));
  uint32_t w[4] = {0, 0, 0, 0};
  if constexpr (kBytes == 4) {
    w[0] = __ldg(reinterpret_cast<const unsigned*>(p));
  } else if constexpr (kBytes == 8) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    w[0] = v.x, w[1] = v.y;
  } else {
    static_assert(kBytes == 16, "a lane reads 4, 8 or 16 bytes");
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  }
#pragma unroll
  for (int e = 0; e < N; ++e) {
    if constexpr (sizeof(T) == 4) {
      f[e] = __uint_as_float(w[e]);
    } else {  // bf16: the top half of an fp32
      const uint32_t x = w[e / 2];
      f[e] = __uint_as_float(e % 2 ? x & 0xffff0000u : x << 16);
    }
  }
}

// The bookkeeping of one tier row j once its attention shares are summed
// (a_last = the last query row's share, a_all = every row's; both already /Hq).
// Shared by ScoreRowsKernel and ScoreDecodeKernel so the two paths store alike.
__device__ __forceinline__ void StoreRowScore(const AkvScoreParams& p, const AkvTiers& t, uint32_t words, int j,
                                              int n_hot, int32_t pos, float a_all, float a_last) {
  const bool warm = j >= n_hot;
  float* s = warm ? t.warm_score + (j - n_hot) : t.hot_score + j;
  if (warm) t.warm_a[j - n_hot] = a_last;
  if (p.mode != AkvScoring::kHybrid) {
    *s = fmaf(p.decay, *s, a_last);
    return;
  }
  const float u = fmaf(p.decay, *s, a_all);
  *s = u;
  atomicMax(p.workspace + 2 * words, __float_as_uint(u));  // u >= 0: bit order = value order
  if (pos >= 0 && static_cast<uint32_t>(pos) < words * 32u) atomicOr(p.workspace + (pos >> 5), 1u << (pos & 31));
}

// Grid: ceil((C_hot + C_warm) / kScoreDecodeRows) CTAs (rows past n_hot + n_warm
// idle); block: Hkv warps. q_stride_h in elements (multiple of D/32 elements'
// vector width, 16-byte aligned q: checked by the launcher).
template <class T, int D>
__global__ void __launch_bounds__(kScoreDecodeMaxKvHeads * 32) ScoreDecodeKernel(const AkvScoreParams p, AkvTiers t,
                                                                                 int64_t q_stride_h, uint32_t words) {
  constexpr int N = D / 32;  // dims per lane
  __shared__ float part[kScoreDecodeRows][kScoreDecodeMaxKvHeads];
  const AkvLayout& lay = p.layout;
  const int hkv = lay.num_kv_heads, hq = p.num_heads, group = hq / hkv;
  const int kvh = threadIdx.x / 32, lane = threadIdx.x % 32, d0 = lane * N;
  const int n_hot = min(max(t.counts[kAkvNHot], 0), lay.hot_capacity);
  const int n_warm = min(max(t.counts[kAkvNWarm], 0), lay.warm_capacity);
  const int n = n_hot + n_warm, j0 = blockIdx.x * kScoreDecodeRows;
  if (j0 >= n) return;  // the whole CTA: no barrier below is skipped by part of it
  const int32_t qpos = __ldg(p.q_pos);

  // 1. Every row's raw slice for this lane, loads issued before any math.
  const int bits = lay.warm_bits, cb = lay.CodeBytes();
  uint32_t code[kScoreDecodeRows];
  float kf[kScoreDecodeRows][N], sc[kScoreDecodeRows], mn[kScoreDecodeRows];
  bool live[kScoreDecodeRows];
#pragma unroll
  for (int r = 0; r < kScoreDecodeRows; ++r) {
    const int j = j0 + r;
    code[r] = 0, sc[r] = 0.0f, mn[r] = 0.0f;
    live[r] = false;
    if (j >= n) continue;
    const bool warm = j >= n_hot;
    const int row = warm ? j - n_hot : j;
    live[r] = (warm ? __ldg(t.warm_pos + row) : __ldg(t.hot_pos + row)) <= qpos;  // causal
    const int64_t slice = static_cast<int64_t>(row) * hkv + kvh;
    if (!warm) {
      LoadLaneElems<T, N>(static_cast<const T*>(t.hot_k) + slice * D + d0, kf[r]);
      continue;
    }
    const int bit = d0 * bits;  // N * bits <= 32 and lane-aligned: one word
    code[r] = __ldg(reinterpret_cast<const uint32_t*>(t.warm_k + slice * cb) + (bit >> 5)) >> (bit & 31);
    const int64_t gi = slice * lay.Groups() + d0 / lay.group_size;
    sc[r] = HalfBitsToF(__ldg(t.warm_k_scale + gi));
    mn[r] = HalfBitsToF(__ldg(t.warm_k_zero + gi));
  }
  // q of the G heads for the lane's dims; lse per head (non-finite: the head saw nothing).
  float qf[kScoreDecodeMaxGroup][N], lse[kScoreDecodeMaxGroup];
#pragma unroll
  for (int c = 0; c < kScoreDecodeMaxGroup; ++c) {
    if (c >= group) break;
    const int h = kvh * group + c;
    LoadLaneElems<T, N>(static_cast<const T*>(p.q) + h * q_stride_h + d0, qf[c]);
    lse[c] = __ldg(p.lse + h);
  }

  // 2. Dot products, shares, the KV head's partial per row.
#pragma unroll
  for (int r = 0; r < kScoreDecodeRows; ++r) {
    const int j = j0 + r;
    float acc = 0.0f;
    if (j < n && live[r]) {
      if (j >= n_hot) {
#pragma unroll
        for (int e = 0; e < N; ++e) kf[r][e] = Dequant((code[r] >> (e * bits)) & ((1u << bits) - 1u), sc[r], mn[r]);
      }
#pragma unroll
      for (int c = 0; c < kScoreDecodeMaxGroup; ++c) {
        if (c >= group) break;
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < N; ++e) dot = fmaf(qf[c][e], kf[r][e], dot);
#pragma unroll
        for (int off = 16; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        if (isfinite(lse[c])) acc += expf(dot * p.scale - lse[c]);
      }
    }
    if (lane == 0) part[r][kvh] = acc;
  }
  __syncthreads();

  // 3. One thread per row: the KV heads' partials in order, then the store.
  if (threadIdx.x >= kScoreDecodeRows) return;
  const int j = j0 + static_cast<int>(threadIdx.x);
  if (j >= n) return;
  float a = 0.0f;
  for (int k = 0; k < hkv; ++k) a += part[threadIdx.x][k];
  a /= hq;
  const bool warm = j >= n_hot;
  const int32_t pos = warm ? t.warm_pos[j - n_hot] : t.hot_pos[j];
  StoreRowScore(p, t, words, j, n_hot, pos, a, a);
}

}  // namespace kvstream::akv_detail
