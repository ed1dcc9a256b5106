// K1 laser_window_scores, K1b laser_pool_scores and K2 laser_head_mean on the GPU (formulas and
// shapes: laser_score.h; laser_kv.md §4.3 steps 4-5, §7). K1 runs once per
// layer and block on q query rows against the score window, in two passes
// so that no (h, t, j) logit is ever stored: pass 1 keeps an online max and
// sum per (h, t) row (the window split in up to 16 parts for parallelism,
// then merged), pass 2 recomputes each logit and adds its probability to its
// key. Both passes stage a 32-key tile (transposed, fp32) and 32 query rows
// in shared memory; each thread holds one key x 4 query rows in registers.
// NOTE(laser): TODO(laser-perf): fp32 CUDA-core dots; a bf16 tensor-core
// (mma) version would be several times faster on long windows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/laser_kv/laser_score.h"

namespace kvstream {
namespace laser_score_detail {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;                 // keys per shared-memory tile (one per lane)
constexpr int kRowsPerWarp = 4;           // query rows per warp (register tile)
constexpr int kRows = kWarps * kRowsPerWarp;  // query rows per CTA
constexpr int kKeysPerSplit = 512;        // pass 1 splits the window in chunks of about this size
constexpr float kNegInf = -__builtin_huge_valf();

// Host-resolved geometry of the window (two segments, layer 0 of each).
struct Window {
  const void* k[2];
  int len0, wn, splits;
  int64_t sh[2], sj[2];  // element strides per KV head and per row
  int64_t qst, qsh;
};

// Selects with constant indices only: a dynamic index into the by-value
// parameter struct would copy it to local memory.
template <class T>
__device__ __forceinline__ float KeyAt(const Window& w, int g, int j, int c) {
  const bool second = j >= w.len0;
  const T* k = static_cast<const T*>(second ? w.k[1] : w.k[0]);
  const int64_t r = second ? j - w.len0 : j;
  return ToF(k[g * (second ? w.sh[1] : w.sh[0]) + r * (second ? w.sj[1] : w.sj[0]) + c]);
}

// Keys j0..j0+31 of KV head g, transposed into ks[c][jj] (0 past the window):
// global reads run along c, and lane jj later reads column jj without bank
// conflicts (row pitch 33).
template <class T, int D>
__device__ __forceinline__ void LoadTile(const Window& w, int g, int j0, float (*ks)[kTile + 1]) {
  for (int x = threadIdx.x; x < kTile * D; x += kThreads) {
    const int jj = x / D, c = x % D, j = j0 + jj;
    ks[c][jj] = j < w.wn ? KeyAt<T>(w, g, j, c) : 0.0f;
  }
}

// Query rows t0..t0+kRows-1 of head h into qs (0 past q).
template <class T, int D>
__device__ __forceinline__ void LoadRows(const LaserWindowScoresParams& p, const Window& w, int h, int t0,
                                         float (*qs)[D]) {
  for (int x = threadIdx.x; x < kRows * D; x += kThreads) {
    const int r = x / D, c = x % D;
    qs[r][c] = t0 + r < p.num_query ? ToF(static_cast<const T*>(p.q)[(t0 + r) * w.qst + h * w.qsh + c]) : 0.0f;
  }
}

// Unscaled logits of the lane's key against qs rows r0..r0+3.
template <int D>
__device__ __forceinline__ void DotRows(const float (*qs)[D], int r0, const float (*ks)[kTile + 1], int lane,
                                        float* z) {
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) z[r] = 0.0f;
#pragma unroll 4
  for (int c = 0; c < D; c += 4) {
    const float k0 = ks[c][lane], k1 = ks[c + 1][lane], k2 = ks[c + 2][lane], k3 = ks[c + 3][lane];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const float4 q = *reinterpret_cast<const float4*>(&qs[r0 + r][c]);  // broadcast
      z[r] = fmaf(q.x, k0, fmaf(q.y, k1, fmaf(q.z, k2, fmaf(q.w, k3, z[r]))));
    }
  }
}

// Pass 1: CTA (32 query rows, head h, window split s); warp w owns rows
// 4w..4w+3, lane = key; online max/sum per lane, merged over the warp, and
// written as the split's partial (m, s).
template <class T, int D>
__global__ void __launch_bounds__(kThreads) RowStatsKernel(LaserWindowScoresParams p, Window w) {
  __shared__ __align__(16) float qs[kRows][D];
  __shared__ float ks[D][kTile + 1];
  const int h = blockIdx.y, split = blockIdx.z, g = LaserKvHeadOf(h, p.num_heads, p.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t0 = blockIdx.x * kRows;
  const int tiles = (w.wn + kTile - 1) / kTile;
  const int tile_begin = static_cast<int>(int64_t(tiles) * split / w.splits);
  const int tile_end = static_cast<int>(int64_t(tiles) * (split + 1) / w.splits);
  LoadRows<T, D>(p, w, h, t0, qs);
  float m[kRowsPerWarp], s[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) m[r] = kNegInf, s[r] = 0.0f;
  for (int tile = tile_begin; tile < tile_end; ++tile) {
    __syncthreads();  // qs ready / previous tile consumed
    LoadTile<T, D>(w, g, tile * kTile, ks);
    __syncthreads();
    float z[kRowsPerWarp];
    DotRows<D>(qs, warp * kRowsPerWarp, ks, lane, z);
    if (tile * kTile + lane < w.wn) {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const float zr = z[r] * p.scale;
        if (zr > m[r]) {
          s[r] = s[r] * expf(m[r] - zr) + 1.0f;
          m[r] = zr;
        } else {
          s[r] += expf(zr - m[r]);
        }
      }
    }
  }
  const int HQ = p.num_heads * p.num_query;
  float* part = p.row_stats + 2 * HQ + int64_t(split) * 2 * HQ;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    float mr = m[r], sr = s[r];
    for (int off = 16; off > 0; off >>= 1) {  // lanes that saw no key hold (-inf, 0)
      const float mo = __shfl_xor_sync(0xffffffffu, mr, off), so = __shfl_xor_sync(0xffffffffu, sr, off);
      const float mn = fmaxf(mr, mo);
      sr = (mr == kNegInf ? 0.0f : sr * expf(mr - mn)) + (mo == kNegInf ? 0.0f : so * expf(mo - mn));
      mr = mn;
    }
    const int t = t0 + warp * kRowsPerWarp + r;
    if (lane == 0 && t < p.num_query) {
      part[h * p.num_query + t] = mr;
      part[HQ + h * p.num_query + t] = sr;
    }
  }
}

// Merges the splits' partials of each (h, t) into row_stats[0] (m), [1] (Zs).
__global__ void MergeStatsKernel(LaserWindowScoresParams p, int splits) {
  const int HQ = p.num_heads * p.num_query;
  const int x = blockIdx.x * kThreads + threadIdx.x;
  if (x >= HQ) return;
  const float* part = p.row_stats + 2 * HQ;
  float m = kNegInf;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, part[int64_t(s) * 2 * HQ + x]);
  float z = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float ms = part[int64_t(s) * 2 * HQ + x];
    if (ms != kNegInf) z += part[int64_t(s) * 2 * HQ + HQ + x] * expf(ms - m);
  }
  p.row_stats[x] = m;
  p.row_stats[HQ + x] = z;
}

// Pass 2: CTA per 32-key tile; lane = key, warp w takes rows 4w..4w+3 of every
// 32-row block of every head; per-key sums over (h, t) in fp32, added once
// to scores (no atomics: one CTA owns each key).
template <class T, int D>
__global__ void __launch_bounds__(kThreads) KeyMassKernel(LaserWindowScoresParams p, Window w) {
  __shared__ __align__(16) float qs[kRows][D];
  __shared__ float ks[D][kTile + 1];
  __shared__ float red[kWarps][kTile];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, j0 = blockIdx.x * kTile;
  const int H = p.num_heads, Q = p.num_query;
  const float* mrow = p.row_stats;
  const float* zrow = p.row_stats + H * Q;
  float acc = 0.0f;
  int loaded_g = -1;
  for (int h = 0; h < H; ++h) {
    const int g = LaserKvHeadOf(h, H, p.num_kv_heads);
    for (int t0 = 0; t0 < Q; t0 += kRows) {
      __syncthreads();  // previous qs / ks consumed
      if (g != loaded_g) LoadTile<T, D>(w, g, j0, ks);
      LoadRows<T, D>(p, w, h, t0, qs);
      loaded_g = g;
      __syncthreads();
      float z[kRowsPerWarp];
      DotRows<D>(qs, warp * kRowsPerWarp, ks, lane, z);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int t = t0 + warp * kRowsPerWarp + r;
        if (t < Q) acc += expf(z[r] * p.scale - mrow[h * Q + t]) / zrow[h * Q + t];
      }
    }
  }
  red[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && j0 + lane < w.wn) {
    float sum = 0.0f;
    for (int x = 0; x < kWarps; ++x) sum += red[x][lane];
    p.scores[j0 + lane] += sum;
  }
}

template <class T, int D>
cudaError_t RunScores(const LaserWindowScoresParams& p, const Window& w, cudaStream_t stream) {
  const dim3 grid1((p.num_query + kRows - 1) / kRows, p.num_heads, w.splits);
  RowStatsKernel<T, D><<<grid1, kThreads, 0, stream>>>(p, w);
  KV_CUDA_CHECK(cudaGetLastError());
  const int hq = p.num_heads * p.num_query;
  MergeStatsKernel<<<(hq + kThreads - 1) / kThreads, kThreads, 0, stream>>>(p, w.splits);
  KV_CUDA_CHECK(cudaGetLastError());
  KeyMassKernel<T, D><<<(w.wn + kTile - 1) / kTile, kThreads, 0, stream>>>(p, w);
  return cudaGetLastError();
}

template <class T>
cudaError_t DispatchScores(const LaserWindowScoresParams& p, const Window& w, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: return RunScores<T, 64>(p, w, stream);
    case 128: return RunScores<T, 128>(p, w, stream);
    default: return cudaErrorInvalidValue;
  }
}

// ---- K2 laser_head_mean: one thread per (i, c) ---------------------------------------
struct Segs {
  const void* k[kLaserMaxSegments];
  int len[kLaserMaxSegments];
  int64_t sh[kLaserMaxSegments], sj[kLaserMaxSegments];
};

template <class T>
__global__ void __launch_bounds__(kThreads) HeadMeanKernel(LaserHeadMeanParams p, Segs s) {
  const int64_t x = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (x >= static_cast<int64_t>(p.num_rows) * p.head_dim) return;
  const int i = static_cast<int>(x / p.head_dim), c = static_cast<int>(x % p.head_dim);
  int r = p.rows ? p.rows[i] : i, seg = 0;
  if (r >= s.len[0]) {
    r -= s.len[0], seg = 1;
    if (r >= s.len[1]) r -= s.len[1], seg = 2;
  }
  // Constant-index selects (see KeyAt).
  const void* base = seg == 0 ? s.k[0] : seg == 1 ? s.k[1] : s.k[2];
  const int64_t sh = seg == 0 ? s.sh[0] : seg == 1 ? s.sh[1] : s.sh[2];
  const int64_t sj = seg == 0 ? s.sj[0] : seg == 1 ? s.sj[1] : s.sj[2];
  const T* k = static_cast<const T*>(base) + r * sj + c;
  float sum = 0.0f;
  for (int g = 0; g < p.num_kv_heads; ++g) sum += ToF(k[g * sh]);
  p.out[x] = sum / static_cast<float>(p.num_kv_heads);
}

// ---- K1b laser_pool_scores: one thread per window entry ------------------------------
__global__ void __launch_bounds__(kThreads) PoolScoresKernel(LaserPoolScoresParams p) {
  const int j = static_cast<int>(blockIdx.x) * kThreads + static_cast<int>(threadIdx.x);
  if (j < p.num) p.out[j] = LaserPooledScore(p.scores, p.pos, p.num, p.radius, j);
}

}  // namespace
}  // namespace laser_score_detail

cudaError_t LaunchLaserWindowScores(const LaserWindowScoresParams& p, cudaStream_t stream) {
  using namespace laser_score_detail;
  if (LaserWindowScoresValidate(p) != nullptr || !p.row_stats) return cudaErrorInvalidValue;
  Window w;
  for (int s = 0; s < 2; ++s) {
    const LaserSegStrides st = LaserStridesOf(p.seg[s], p.num_kv_heads, p.head_dim);
    w.k[s] = p.seg[s].k;
    w.sh[s] = st.h;
    w.sj[s] = st.j;
  }
  w.len0 = p.seg[0].len;
  w.wn = p.seg[0].len + p.seg[1].len;
  w.splits = (w.wn + kKeysPerSplit - 1) / kKeysPerSplit;
  if (w.splits > kLaserScoreMaxSplits) w.splits = kLaserScoreMaxSplits;
  w.qst = p.q_stride_t ? p.q_stride_t : int64_t(p.num_heads) * p.head_dim;
  w.qsh = p.q_stride_h ? p.q_stride_h : p.head_dim;
  switch (p.dtype) {
    case KvDType::kBf16: return DispatchScores<__nv_bfloat16>(p, w, stream);
    case KvDType::kFp16: return DispatchScores<__half>(p, w, stream);
    case KvDType::kFp32: return DispatchScores<float>(p, w, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchLaserHeadMean(const LaserHeadMeanParams& p, cudaStream_t stream) {
  using namespace laser_score_detail;
  if (LaserHeadMeanValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_rows == 0) return cudaSuccess;
  Segs s;
  for (int i = 0; i < kLaserMaxSegments; ++i) {
    const LaserSegStrides st = LaserStridesOf(p.seg[i], p.num_kv_heads, p.head_dim);
    s.k[i] = p.seg[i].k, s.len[i] = p.seg[i].len, s.sh[i] = st.h, s.sj[i] = st.j;
  }
  const unsigned blocks = static_cast<unsigned>((int64_t(p.num_rows) * p.head_dim + kThreads - 1) / kThreads);
  switch (p.dtype) {
    case KvDType::kBf16: HeadMeanKernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(p, s); break;
    case KvDType::kFp16: HeadMeanKernel<__half><<<blocks, kThreads, 0, stream>>>(p, s); break;
    case KvDType::kFp32: HeadMeanKernel<float><<<blocks, kThreads, 0, stream>>>(p, s); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchLaserPoolScores(const LaserPoolScoresParams& p, cudaStream_t stream) {
  using namespace laser_score_detail;
  if (LaserPoolScoresValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num == 0) return cudaSuccess;
  PoolScoresKernel<<<static_cast<unsigned>((p.num + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
