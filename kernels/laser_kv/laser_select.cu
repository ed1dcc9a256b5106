// K6 laser_tiebreak_dist, K7a laser_make_keys and K7 laser_select_topk on the
// GPU (formulas and tie rules: laser_select.h; laser_kv.md §4.3 step 5, §6.9).
// K6 computes each value in one thread in the twin's fp32 order (bit-equal);
// K7 is a stable CUB radix sort of (key, index) pairs, descending, followed by
// an ascending sort of the first min(k, N) indices.
#include <cuda_runtime.h>

#include <cstdint>
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda_check.h"
#include "kernels/laser_kv/laser_select.h"

namespace kvstream {
namespace laser_select_detail {
namespace {

constexpr int kThreads = 256;
constexpr size_t kAlign = 256;

unsigned Blocks(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }
size_t AlignUp(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// ---- K6 ------------------------------------------------------------------------------
__device__ __forceinline__ float Centred(const float* x, const float* mu, int64_t i, int c, int D) {
  return mu ? x[i * D + c] - mu[c] : x[i * D + c];
}

// One thread per column: ū, var + 1e-8 and the chunk centroids (twin: TiebreakStats).
__global__ void StatsKernel(LaserTiebreakParams p) {
  const int c = threadIdx.x, D = p.head_dim, Q = p.num_query;
  if (c >= D) return;
  float sum = 0.0f;
  for (int t = 0; t < Q; ++t) sum += Centred(p.u, p.mu, t, c, D);
  const float mean = sum / static_cast<float>(Q);
  float ss = 0.0f;
  for (int t = 0; t < Q; ++t) {
    const float d = Centred(p.u, p.mu, t, c, D) - mean;
    ss = fmaf(d, d, ss);
  }
  p.stats[c] = mean;
  p.stats[D + c] = (Q > 1 ? ss / static_cast<float>(Q - 1) : 0.0f) + kLaserMahalanobisEps;
  const int cs = LaserChunkRows(Q), nch = LaserNumChunks(Q);
  for (int k = 0; k < nch; ++k) {
    const int t0 = k * cs, t1 = min(Q, t0 + cs);
    float s = 0.0f;
    for (int t = t0; t < t1; ++t) s += Centred(p.u, p.mu, t, c, D);
    p.stats[(2 + k) * D + c] = t1 > t0 ? s / static_cast<float>(t1 - t0) : 0.0f;
  }
}

__global__ void __launch_bounds__(kThreads) DistKernel(LaserTiebreakParams p, LaserTieBreak mode) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= p.num_cand) return;
  const int D = p.head_dim, Q = p.num_query;
  const float* st = p.stats;
  // Squared distance of candidate j to a row y (centred by the caller), c ascending.
  auto sq = [&](auto y) {
    float acc = 0.0f;
    for (int c = 0; c < D; ++c) {
      const float d = Centred(p.v, p.mu, j, c, D) - y(c);
      acc = fmaf(d, d, acc);
    }
    return acc;
  };
  float d2 = 0.0f;
  switch (mode) {
    case LaserTieBreak::kL2: d2 = sq([&](int c) { return st[c]; }); break;
    case LaserTieBreak::kMaxSim:
      d2 = __builtin_huge_valf();
      for (int t = 0; t < Q; ++t) d2 = fminf(d2, sq([&](int c) { return Centred(p.u, p.mu, t, c, D); }));
      break;
    case LaserTieBreak::kMahalanobis:
      for (int c = 0; c < D; ++c) {
        const float d = Centred(p.v, p.mu, j, c, D) - st[c];
        d2 += __fdiv_rn(__fmul_rn(d, d), st[D + c]);
      }
      break;
    case LaserTieBreak::kPartitionedCentroid: {
      const int cs = LaserChunkRows(Q), nch = LaserNumChunks(Q);
      d2 = __builtin_huge_valf();
      for (int k = 0; k < nch; ++k)
        if (k * cs < Q) d2 = fminf(d2, sq([&](int c) { return st[(2 + k) * D + c]; }));
      break;
    }
    default: d2 = 0.0f; break;
  }
  p.dist[j] = sqrtf(d2);
}

// ---- K7a -------------------------------------------------------------------------------
__global__ void MakeKeysKernel(LaserMakeKeysParams p) {
  const int i = blockIdx.x * kThreads + threadIdx.x;
  if (i >= p.num) return;
  switch (p.mode) {
    case LaserKeyMode::kExact:
      p.keys[i] = LaserExactKey(p.score[p.score_rows ? p.score_rows[i] : i], p.pos[i]);
      break;
    case LaserKeyMode::kMagicpig: p.keys[i] = LaserMagicpigKey(p.best[i], p.pos[i]); break;
    default: p.keys[i] = LaserFrequencyKey(p.counts[i], p.dist ? p.dist[i] : 0.0f); break;
  }
}

// ---- K7 --------------------------------------------------------------------------------
__global__ void IotaKernel(int32_t* idx, int n) {
  const int i = blockIdx.x * kThreads + threadIdx.x;
  if (i < n) idx[i] = i;
}

// Workspace layout: [sorted keys N u64][indices N i32][sorted indices N i32][CUB temp].
struct TopkLayout {
  size_t keys_out = 0, idx_in = 0, idx_out = 0, temp = 0, temp_bytes = 0, total = 0;
};
TopkLayout Plan(int n, int k) {
  TopkLayout t;
  size_t pairs = 0, small = 0;
  cub::DeviceRadixSort::SortPairsDescending(nullptr, pairs, static_cast<const uint64_t*>(nullptr),
                                            static_cast<uint64_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                            static_cast<int32_t*>(nullptr), n);
  const int keep = k < n ? k : n;
  cub::DeviceRadixSort::SortKeys(nullptr, small, static_cast<const int32_t*>(nullptr),
                                 static_cast<int32_t*>(nullptr), keep);
  t.keys_out = 0;
  t.idx_in = AlignUp(size_t(n) * sizeof(uint64_t));
  t.idx_out = t.idx_in + AlignUp(size_t(n) * sizeof(int32_t));
  t.temp = t.idx_out + AlignUp(size_t(n) * sizeof(int32_t));
  t.temp_bytes = AlignUp(pairs > small ? pairs : small);
  t.total = t.temp + t.temp_bytes;
  return t;
}

}  // namespace
}  // namespace laser_select_detail

cudaError_t LaunchLaserTiebreak(const LaserTiebreakParams& p, cudaStream_t stream) {
  using namespace laser_select_detail;
  if (LaserTiebreakValidate(p) != nullptr || !p.stats) return cudaErrorInvalidValue;
  if (p.num_cand == 0) return cudaSuccess;
  LaserTieBreak mode = p.mode;
  if (mode == LaserTieBreak::kMahalanobis && p.num_query == 1) mode = LaserTieBreak::kL2;  // README "LASER-KV"
  StatsKernel<<<1, p.head_dim, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  DistKernel<<<Blocks(p.num_cand), kThreads, 0, stream>>>(p, mode);
  return cudaGetLastError();
}

cudaError_t LaunchLaserMakeKeys(const LaserMakeKeysParams& p, cudaStream_t stream) {
  using namespace laser_select_detail;
  if (LaserMakeKeysValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num == 0) return cudaSuccess;
  MakeKeysKernel<<<Blocks(p.num), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

size_t LaserSelectTopkWorkspaceBytes(int num, int k) {
  return num > 0 && k >= 0 ? laser_select_detail::Plan(num, k).total : 0;
}

cudaError_t LaunchLaserSelectTopk(const LaserSelectTopkParams& p, cudaStream_t stream) {
  using namespace laser_select_detail;
  if (LaserSelectTopkValidate(p) != nullptr) return cudaErrorInvalidValue;
  const int keep = p.k < p.num ? p.k : p.num;
  if (keep == 0) return cudaSuccess;
  const TopkLayout t = Plan(p.num, p.k);
  if (!p.workspace || p.workspace_bytes < t.total) return cudaErrorInvalidValue;
  char* ws = static_cast<char*>(p.workspace);
  auto* keys_out = reinterpret_cast<uint64_t*>(ws + t.keys_out);
  auto* idx_in = reinterpret_cast<int32_t*>(ws + t.idx_in);
  auto* idx_out = reinterpret_cast<int32_t*>(ws + t.idx_out);
  IotaKernel<<<Blocks(p.num), kThreads, 0, stream>>>(idx_in, p.num);
  KV_CUDA_CHECK(cudaGetLastError());
  size_t temp_bytes = t.temp_bytes;
  KV_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(ws + t.temp, temp_bytes, p.keys, keys_out, idx_in,
                                                          idx_out, p.num, 0, 64, stream));
  temp_bytes = t.temp_bytes;
  KV_CUDA_CHECK(cub::DeviceRadixSort::SortKeys(ws + t.temp, temp_bytes, idx_out, p.out, keep, 0, 32, stream));
  return cudaSuccess;
}

}  // namespace kvstream
