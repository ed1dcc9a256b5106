// K1 laser_window_scores and K2 laser_head_mean on the GPU (formulas and
// shapes: laser_score.h; laser_kv.md §4.3 steps 4-5, §7). K1 runs once per
// layer and block on q query rows against the score window, in two passes
// so that no (h, t, j) logit is ever stored: pass 1 keeps an online max and
// sum per (h, t) row, pass 2 recomputes each logit and adds its probability
// to its key. Both passes stage 32-key tiles in shared memory (fp32, padded
// to D+1 so lanes reading different keys hit different banks).
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
constexpr int kTile = 32;   // keys per shared-memory tile (one per lane)
constexpr float kNegInf = -__builtin_huge_valf();

// Host-resolved geometry of the window (two segments, layer 0 of each).
struct Window {
  const void* k[2];
  int len0, wn;
  int64_t sh[2], sj[2];  // element strides per KV head and per row
  int64_t qst, qsh;
};

template <class T>
__device__ __forceinline__ float KeyAt(const Window& w, int g, int j, int c) {
  const int s = j < w.len0 ? 0 : 1;
  const int r = s ? j - w.len0 : j;
  return ToF(static_cast<const T*>(w.k[s])[g * w.sh[s] + r * w.sj[s] + c]);
}

// Loads keys j0..j0+31 of KV head g into ks [32][D+1] (0 past the window).
template <class T, int D>
__device__ __forceinline__ void LoadTile(const Window& w, int g, int j0, float (*ks)[D + 1]) {
  for (int x = threadIdx.x; x < kTile * D; x += kThreads) {
    const int jj = x / D, c = x % D, j = j0 + jj;
    ks[jj][c] = j < w.wn ? KeyAt<T>(w, g, j, c) : 0.0f;
  }
}

template <int D>
__device__ __forceinline__ float Dot(const float* q, const float* k) {
  float acc = 0.0f;
#pragma unroll 16
  for (int c = 0; c < D; ++c) acc = fmaf(q[c], k[c], acc);
  return acc;
}

// Pass 1: CTA (row block of 8 query tokens, head h); warp w owns row t.
template <class T, int D>
__global__ void __launch_bounds__(kThreads) RowStatsKernel(LaserWindowScoresParams p, Window w) {
  __shared__ float qs[kWarps][D];
  __shared__ float ks[kTile][D + 1];
  const int h = blockIdx.y, g = LaserKvHeadOf(h, p.num_heads, p.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t0 = blockIdx.x * kWarps, t = t0 + warp;
  for (int x = threadIdx.x; x < kWarps * D; x += kThreads) {
    const int r = x / D, c = x % D;
    qs[r][c] = t0 + r < p.num_query ? ToF(static_cast<const T*>(p.q)[(t0 + r) * w.qst + h * w.qsh + c]) : 0.0f;
  }
  float m = kNegInf, s = 0.0f;
  for (int j0 = 0; j0 < w.wn; j0 += kTile) {
    __syncthreads();  // qs ready / previous tile consumed
    LoadTile<T, D>(w, g, j0, ks);
    __syncthreads();
    if (j0 + lane < w.wn) {
      const float z = Dot<D>(qs[warp], ks[lane]) * p.scale;
      if (z > m) {
        s = s * expf(m - z) + 1.0f;
        m = z;
      } else {
        s += expf(z - m);
      }
    }
  }
  // Merge the 32 lanes' (m, s) (lanes that saw no key hold (-inf, 0)).
  for (int off = 16; off > 0; off >>= 1) {
    const float mo = __shfl_xor_sync(0xffffffffu, m, off), so = __shfl_xor_sync(0xffffffffu, s, off);
    const float mn = fmaxf(m, mo);
    s = (m == kNegInf ? 0.0f : s * expf(m - mn)) + (mo == kNegInf ? 0.0f : so * expf(mo - mn));
    m = mn;
  }
  if (lane == 0 && t < p.num_query) {
    p.row_stats[h * p.num_query + t] = m;
    p.row_stats[(p.num_heads + h) * p.num_query + t] = s;
  }
}

// Pass 2: CTA per 32-key tile; lane = key, warp w takes query rows w, w+8, ...
// of every head; per-key sums over (h, t) in fp32, added once to scores.
template <class T, int D>
__global__ void __launch_bounds__(kThreads) KeyMassKernel(LaserWindowScoresParams p, Window w) {
  __shared__ float qs[kWarps][D];
  __shared__ float ks[kTile][D + 1];
  __shared__ float red[kWarps][kTile];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, j0 = blockIdx.x * kTile;
  const int H = p.num_heads, Q = p.num_query;
  const float* mrow = p.row_stats;
  const float* zrow = p.row_stats + H * Q;
  float acc = 0.0f;
  int loaded_g = -1;
  for (int h = 0; h < H; ++h) {
    const int g = LaserKvHeadOf(h, H, p.num_kv_heads);
    for (int t0 = 0; t0 < Q; t0 += kWarps) {
      __syncthreads();  // previous qs / ks consumed
      if (g != loaded_g) LoadTile<T, D>(w, g, j0, ks);
      for (int x = threadIdx.x; x < kWarps * D; x += kThreads) {
        const int r = x / D, c = x % D;
        qs[r][c] = t0 + r < Q ? ToF(static_cast<const T*>(p.q)[(t0 + r) * w.qst + h * w.qsh + c]) : 0.0f;
      }
      loaded_g = g;
      __syncthreads();
      const int t = t0 + warp;
      if (t < Q) {
        const float z = Dot<D>(qs[warp], ks[lane]) * p.scale;
        acc += expf(z - mrow[h * Q + t]) / zrow[h * Q + t];
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
  const dim3 grid1((p.num_query + kWarps - 1) / kWarps, p.num_heads);
  RowStatsKernel<T, D><<<grid1, kThreads, 0, stream>>>(p, w);
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
  while (seg < kLaserMaxSegments - 1 && r >= s.len[seg]) r -= s.len[seg++];
  const T* k = static_cast<const T*>(s.k[seg]) + r * s.sj[seg] + c;
  float sum = 0.0f;
  for (int g = 0; g < p.num_kv_heads; ++g) sum += ToF(k[g * s.sh[seg]]);
  p.out[x] = sum / static_cast<float>(p.num_kv_heads);
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

}  // namespace kvstream
