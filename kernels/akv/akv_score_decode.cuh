// Decode form of akv_score_update (one query row, M = 1, G = Hq / Hkv <=
// kScoreDecodeMaxGroup, Hkv <= kScoreDecodeMaxKvHeads): the same sums as
// ScoreRowsKernel (akv_score.cu) over a tile of rows staged in shared memory.
// Included by akv_score.cu only.
//
// Why: ScoreRowsKernel gives each thread a (row, KV head) slice and walks its
// D dims from global memory in 8-element chunks, each waiting on the last; at
// the default tiers (1024 hot bf16 + 2048 warm 4-bit rows, Hkv 8, D 128) it
// took 22 us a layer for 3.3 MB, the largest AKV kernel of a decode step, and
// a warp-per-slice layout with shuffle reductions was no faster (21.5 us: a
// chain of dependent shuffles per row and head). Here a CTA copies
// kScoreDecodeRows rows of one tier (all KV heads: one contiguous block of
// the tier) into shared memory with independent 16-byte loads, then thread
// (KV head = warp, row = lane) takes its slice and q from shared memory (q: a
// broadcast, the warp shares the head) with no cross-lane step: 14-15 us a
// layer, and AKV at (8,8K) end to end 1.06x dense where it was 0.96x (ncu:
// bench/results/gpu/ncu_akv_step_{1x8k_before,8x8k_score_tile,8x8k}_s16_h100.json).
// Slices sit 16-byte-chunk XOR-swizzled by row, so the 8 lanes of a 16-byte
// phase hit distinct banks.
//
// Numerics: each thread sums its slice in dim order in fp32 (as
// ScoreRowsKernel), the G heads' exp(z - lse) in head order, then one thread
// per row the Hkv partials in KV-head order: deterministic, and equal to
// ScoreRowsKernel's sums.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/akv/akv_device.cuh"
#include "kernels/akv/akv_manage.h"

namespace kvstream::akv_detail {

constexpr int kScoreDecodeMaxGroup = 8;     // query heads per KV head (accumulators per thread)
constexpr int kScoreDecodeRows = 32;        // tier rows per CTA: a lane each
constexpr int kScoreDecodeMaxKvHeads = 16;  // one warp per KV head (more: ScoreRowsKernel)

// The bookkeeping of one tier row j once its attention shares are summed
// (a_last = the last query row's share, a_all = every row's; both already /Hq;
// s_old = its score before this step).
// Shared by ScoreRowsKernel and ScoreDecodeKernel so the two paths store alike.
__device__ __forceinline__ void StoreRowScore(const AkvScoreParams& p, const AkvTiers& t, uint32_t words, int j,
                                              int n_hot, int32_t pos, float s_old, float a_all, float a_last) {
  const bool warm = j >= n_hot;
  float* s = warm ? t.warm_score + (j - n_hot) : t.hot_score + j;
  if (warm) t.warm_a[j - n_hot] = a_last;
  if (p.mode != AkvScoring::kHybrid) {
    *s = fmaf(p.decay, s_old, a_last);
    return;
  }
  const float u = fmaf(p.decay, s_old, a_all);
  *s = u;
  atomicMax(p.workspace + 2 * words, __float_as_uint(u));  // u >= 0: bit order = value order
  if (pos >= 0 && static_cast<uint32_t>(pos) < words * 32u) atomicOr(p.workspace + (pos >> 5), 1u << (pos & 31));
}

// CTA 0 copies the last query row and its lse to p.q_keep / p.lse_keep
// (akv_manage.h), before anything that may end the CTA early.
template <class T>
__device__ __forceinline__ void KeepLastQuery(const AkvScoreParams& p, int64_t q_stride_m, int64_t q_stride_h) {
  if (blockIdx.x != 0 || p.q_keep == nullptr) return;
  const int D = p.layout.head_dim, hq = p.num_heads, last = p.num_rows - 1;
  const T* q = static_cast<const T*>(p.q) + last * q_stride_m;
  T* out = static_cast<T*>(p.q_keep);
  for (int i = threadIdx.x; i < hq * D; i += blockDim.x) out[i] = q[(i / D) * q_stride_h + i % D];
  for (int i = threadIdx.x; i < hq; i += blockDim.x) p.lse_keep[i] = p.lse[int64_t(last) * hq + i];
}

// Shared memory of one CTA: q [Hq][D] fp32, then the tile's slices [rows][Hkv]
// of `slice_bytes` each (hot: D elements; warm: Cb code bytes), swizzled.
inline int ScoreDecodeSmemBytes(int num_heads, int num_kv_heads, int head_dim, int slice_bytes) {
  return num_heads * head_dim * 4 + kScoreDecodeRows * num_kv_heads * slice_bytes;
}

// Position of 16-byte chunk c of a slice of `chunks` (a power of two) chunks in row r.
__device__ __forceinline__ int SwizzledChunk(int c, int r, int chunks) { return c ^ (r & (chunks - 1) & 7); }

// Grid: ceil(C_hot / kScoreDecodeRows) hot tiles, then ceil(C_warm / kScoreDecodeRows)
// warm tiles (rows past n_hot / n_warm idle); block: Hkv warps; dynamic shared
// memory ScoreDecodeSmemBytes of the hot slice (the larger). Warm code slices
// are whole 16-byte chunks (checked by the launcher), q 16-byte aligned.
template <class T, int D, int B>
__global__ void __launch_bounds__(kScoreDecodeMaxKvHeads * 32, 1) ScoreDecodeKernel(const AkvScoreParams p, AkvTiers t,
                                                                                 int64_t q_stride_h, uint32_t words) {
  extern __shared__ uint4 score_smem[];
  constexpr int kHotChunks = D * static_cast<int>(sizeof(T)) / 16, kWarmChunks = D * B / 8 / 16;
  constexpr int kPerWord = 32 / B;  // warm codes per 32-bit word
  const AkvLayout& lay = p.layout;
  const int hkv = lay.num_kv_heads, hq = p.num_heads, group = hq / hkv;
  const int kvh = threadIdx.x / 32, lane = threadIdx.x % 32;
  KeepLastQuery<T>(p, 0, q_stride_h);  // one query row
  const int n_hot = min(max(t.counts[kAkvNHot], 0), lay.hot_capacity);
  const int n_warm = min(max(t.counts[kAkvNWarm], 0), lay.warm_capacity);
  const int hot_tiles = (lay.hot_capacity + kScoreDecodeRows - 1) / kScoreDecodeRows;
  const bool warm = static_cast<int>(blockIdx.x) >= hot_tiles;
  const int row0 = (warm ? blockIdx.x - hot_tiles : blockIdx.x) * kScoreDecodeRows;
  const int live = min((warm ? n_warm : n_hot) - row0, kScoreDecodeRows);  // rows of this tile in the tier
  if (live <= 0) return;  // the whole CTA: no barrier below is skipped by part of it
  const int chunks = warm ? kWarmChunks : kHotChunks;

  // 1. Every global read the thread needs, issued before any is used: its
  // row's position, its heads' lse, the first scale/zero group of its warm
  // slice, the row's old score (warp 0 stores it), q (fp32) and the tile
  // (independent 16-byte loads, slices swizzled).
  const int r = lane, j = row0 + r;  // j: row in its tier
  const bool in_tile = r < live;
  const int32_t pos = in_tile ? (warm ? t.warm_pos[j] : t.hot_pos[j]) : 0;
  const int32_t qpos = __ldg(p.q_pos);
  float lse[kScoreDecodeMaxGroup];
#pragma unroll
  for (int g = 0; g < kScoreDecodeMaxGroup; ++g) lse[g] = g < group ? __ldg(p.lse + kvh * group + g) : 0.0f;
  const int64_t gbase = (static_cast<int64_t>(j) * hkv + kvh) * lay.Groups();
  float sc = 0.0f, mn = 0.0f;
  if (warm && in_tile) sc = HalfBitsToF(t.warm_k_scale[gbase]), mn = HalfBitsToF(t.warm_k_zero[gbase]);
  const float s_old = kvh == 0 && in_tile ? (warm ? t.warm_score[j] : t.hot_score[j]) : 0.0f;
  float* qs = reinterpret_cast<float*>(score_smem);
  uint4* tile = score_smem + hq * D / 4;
  for (int i = threadIdx.x; i < hq * D / 8; i += blockDim.x) {  // 8 elements of q per step
    const int h = i / (D / 8), d = (i % (D / 8)) * 8;
    const uint4* src = reinterpret_cast<const uint4*>(static_cast<const T*>(p.q) + h * q_stride_h + d);
    float f[8];
    Vec16<T>::Load(__ldg(src), f);
    if constexpr (sizeof(T) == 4) Vec16<T>::Load(__ldg(src + 1), f + 4);
#pragma unroll
    for (int e = 0; e < 8; ++e) qs[h * D + d + e] = f[e];
  }
  const uint8_t* base = warm ? t.warm_k : static_cast<const uint8_t*>(t.hot_k);
  const uint4* src = reinterpret_cast<const uint4*>(base + static_cast<int64_t>(row0) * hkv * chunks * 16);
  for (int i = threadIdx.x; i < live * hkv * chunks; i += blockDim.x) {
    const int slice = i / chunks, c = i % chunks, r = slice / hkv;
    tile[slice * chunks + SwizzledChunk(c, r, chunks)] = __ldg(src + i);
  }
  __syncthreads();

  // 2. Thread (row = lane, KV head = warp): G dot products from shared memory.
  float dot[kScoreDecodeMaxGroup];
#pragma unroll
  for (int g = 0; g < kScoreDecodeMaxGroup; ++g) dot[g] = 0.0f;
  const bool seen = in_tile && pos <= qpos;  // causal
  const float* qh = qs + kvh * group * D;
  const uint4* mine = tile + (r * hkv + kvh) * chunks;
  // fma of n consecutive k values from dim d0 into every head's dot product.
  const auto accumulate = [&](const float* kf, int n, int d0) {
#pragma unroll
    for (int g = 0; g < kScoreDecodeMaxGroup; ++g) {
      if (g >= group) break;
      const float* qd = qh + g * D + d0;
#pragma unroll
      for (int e = 0; e < 16; ++e) {
        if (e < n) dot[g] = fmaf(qd[e], kf[e], dot[g]);
      }
    }
  };
  if (seen && !warm) {
#pragma unroll 4
    for (int c = 0; c < kHotChunks; ++c) {
      float kf[16];
      Vec16<T>::Load(mine[SwizzledChunk(c, r, kHotChunks)], kf);
      accumulate(kf, Vec16<T>::kN, c * Vec16<T>::kN);
    }
  } else if (seen) {
    int grp = 0;  // sc, mn: group 0's, loaded above
    for (int c = 0; c < kWarmChunks; ++c) {
      const uint4 w = mine[SwizzledChunk(c, r, kWarmChunks)];
      const uint32_t word[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const int d0 = (c * 4 + x) * kPerWord;  // a word's dims lie in one group (g >= 32 >= kPerWord)
        if (d0 / lay.group_size != grp) {
          grp = d0 / lay.group_size;
          sc = HalfBitsToF(t.warm_k_scale[gbase + grp]);
          mn = HalfBitsToF(t.warm_k_zero[gbase + grp]);
        }
        float kf[16];
#pragma unroll
        for (int e = 0; e < kPerWord; ++e) kf[e] = Dequant((word[x] >> (e * B)) & ((1u << B) - 1u), sc, mn);
        accumulate(kf, kPerWord, d0);
      }
    }
  }
  float acc = 0.0f;
#pragma unroll
  for (int g = 0; g < kScoreDecodeMaxGroup; ++g) {
    if (!seen || g >= group) break;
    if (isfinite(lse[g])) acc += expf(dot[g] * p.scale - lse[g]);  // else the head saw no token
  }
  __syncthreads();  // every slice has been read: the tile's memory takes the partials
  float* part = reinterpret_cast<float*>(tile);
  part[r * hkv + kvh] = acc;
  __syncthreads();

  // 3. Warp 0, a thread per row: the KV heads' partials in order, then the store.
  if (kvh != 0 || !in_tile) return;
  float a = 0.0f;
  for (int k = 0; k < hkv; ++k) a += part[r * hkv + k];
  a /= hq;
  StoreRowScore(p, t, words, warm ? n_hot + j : j, n_hot, pos, s_old, a, a);
}

}  // namespace kvstream::akv_detail
