// LSH kernels of LASER-KV on the GPU (formulas: laser_lsh.h; laser_kv.md
// §4.3 step 5, §6.7, §6.8, §7). Each output is produced by one thread in the
// twin's fp32 operation order (sequential sums, explicit fmaf), so results
// are bit-identical to the CPU twins; sizes are small (candidates of one block).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/laser_kv/laser_lsh.h"

namespace kvstream {
namespace laser_lsh_detail {
namespace {

constexpr int kThreads = 256;

unsigned Blocks(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

// ---- K3a: one thread per column, rows in order (the twin's order) -----------------
__global__ void ColumnMeanKernel(LaserColumnMeanParams p) {
  const int c = threadIdx.x;
  if (c >= p.head_dim) return;
  float sum = 0.0f;
  for (int i = 0; i < p.num_rows; ++i) sum += p.v[static_cast<int64_t>(i) * p.head_dim + c];
  p.mu[c] = sum / static_cast<float>(p.num_rows);
}

// ---- K3: one CTA per row ------------------------------------------------------------
__global__ void __launch_bounds__(kThreads) HashKernel(LaserLshHashParams p) {
  __shared__ float x[128];
  __shared__ uint8_t bit[kLaserMaxCodeBits];
  const int D = p.head_dim, L = p.num_tables, K = p.num_bits, LK = L * K;
  const int64_t i = blockIdx.x;
  for (int c = threadIdx.x; c < D; c += kThreads) x[c] = p.mu ? p.v[i * D + c] - p.mu[c] : p.v[i * D + c];
  __syncthreads();
  for (int col = threadIdx.x; col < LK; col += kThreads) {
    float proj = 0.0f;
    for (int c = 0; c < D; ++c) proj = fmaf(x[c], p.r[static_cast<int64_t>(c) * LK + col], proj);
    bit[col] = proj > 0.0f ? 1 : 0;  // strict (§6.7)
  }
  __syncthreads();
  for (int t = threadIdx.x; t < L; t += kThreads) {
    int32_t code = 0;
    for (int k = 0; k < K; ++k) code |= int32_t(bit[t * K + k]) << k;
    p.codes[i * L + t] = code;
  }
  if (p.bits) {
    const int W = (LK + 63) / 64;
    for (int w = threadIdx.x; w < W; w += kThreads) {
      uint64_t word = 0;
      for (int b = 0; b < 64 && w * 64 + b < LK; ++b) word |= uint64_t(bit[w * 64 + b]) << b;
      p.bits[i * W + w] = word;
    }
  }
}

// ---- K4: bitmap of the query's codes per table, then counts ------------------------
__global__ void MarkKernel(LaserCollisionCountParams p, int words_per_table) {
  const int64_t x = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (x >= static_cast<int64_t>(p.num_query) * p.num_tables) return;
  const int t = static_cast<int>(x % p.num_tables);
  const uint32_t code = static_cast<uint32_t>(p.query_codes[x]);
  if (code >> p.num_bits) return;  // out of range: matches nothing (twin alike)
  atomicOr(&p.bitmap[static_cast<int64_t>(t) * words_per_table + (code >> 5)], 1u << (code & 31));
}

__global__ void CountKernel(LaserCollisionCountParams p, int words_per_table) {
  const int j = blockIdx.x * kThreads + threadIdx.x;
  if (j >= p.num_cand) return;
  int n = 0;
  for (int t = 0; t < p.num_tables; ++t) {
    const uint32_t code = static_cast<uint32_t>(p.cand_codes[static_cast<int64_t>(j) * p.num_tables + t]);
    if (code >> p.num_bits) continue;
    n += (p.bitmap[static_cast<int64_t>(t) * words_per_table + (code >> 5)] >> (code & 31)) & 1u;
  }
  p.counts[j] = static_cast<uint8_t>(n);
}

// ---- K5: one thread per survivor ------------------------------------------------------
__global__ void BestMatchKernel(LaserBestMatchParams p) {
  const int j = blockIdx.x * kThreads + threadIdx.x;
  if (j >= p.num_rows) return;
  const int LK = p.num_tables * p.num_bits, W = (LK + 63) / 64;
  const uint64_t* s = p.cand_bits + static_cast<int64_t>(p.rows ? p.rows[j] : j) * W;
  int best = 0;
  for (int u = 0; u < p.num_query; ++u) {
    const uint64_t* qb = p.query_bits + static_cast<int64_t>(u) * W;
    int diff = 0;
    for (int w = 0; w < W; ++w) diff += __popcll(qb[w] ^ s[w]);  // s stays in L1 across u
    best = max(best, LK - diff);
  }
  p.best[j] = static_cast<uint16_t>(best);
}

}  // namespace
}  // namespace laser_lsh_detail

cudaError_t LaunchLaserColumnMean(const LaserColumnMeanParams& p, cudaStream_t stream) {
  using namespace laser_lsh_detail;
  if (LaserColumnMeanValidate(p) != nullptr) return cudaErrorInvalidValue;
  ColumnMeanKernel<<<1, p.head_dim, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchLaserLshHash(const LaserLshHashParams& p, cudaStream_t stream) {
  using namespace laser_lsh_detail;
  if (LaserLshHashValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_rows == 0) return cudaSuccess;
  HashKernel<<<p.num_rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchLaserCollisionCount(const LaserCollisionCountParams& p, cudaStream_t stream) {
  using namespace laser_lsh_detail;
  if (LaserCollisionCountValidate(p) != nullptr || !p.bitmap) return cudaErrorInvalidValue;
  if (p.num_cand == 0) return cudaSuccess;
  const int words = p.num_bits >= 5 ? 1 << (p.num_bits - 5) : 1;
  KV_CUDA_CHECK(cudaMemsetAsync(p.bitmap, 0, LaserCollisionWorkspaceBytes(p.num_tables, p.num_bits), stream));
  MarkKernel<<<Blocks(int64_t(p.num_query) * p.num_tables), kThreads, 0, stream>>>(p, words);
  KV_CUDA_CHECK(cudaGetLastError());
  CountKernel<<<Blocks(p.num_cand), kThreads, 0, stream>>>(p, words);
  return cudaGetLastError();
}

cudaError_t LaunchLaserBestMatch(const LaserBestMatchParams& p, cudaStream_t stream) {
  using namespace laser_lsh_detail;
  if (LaserBestMatchValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_rows == 0) return cudaSuccess;
  BestMatchKernel<<<Blocks(p.num_rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
