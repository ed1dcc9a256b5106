// The dense paged decode kernel (kernels/dense) timed on a strategy bench's
// own shape, for the side-by-side ratio (akv_attention_bench,
// akv_attention_batch_bench, sq_attend_bench): bf16 K/V pages in random
// order (a fragmented pool, as the engine's), the planner's splits, and
// enough pool copies rotated that no launch finds its K/V in L2.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "bench/attention/bench_common.cuh"
#include "kernels/dense/dense_decode.h"

namespace kvstream::bench {

struct DenseDecodeShape {
  int batch = 1, tokens = 0;  // `batch` sequences of `tokens` each, one launch
  int num_heads = 32, num_kv_heads = 8, head_dim = 128, page_size = 16;
};

struct DenseDecodeTiming {
  float us = 0;    // median of the timed launches
  int splits = 1;  // PlanDenseDecodeSplits
};

inline constexpr int kStepLayers = 32;  // launches per graph of a step-timed bench (Llama-3-8B layers)

// step: launches back to back in one graph (StepUs), else one launch per
// event pair (MedianUs).
inline DenseDecodeTiming TimeDenseDecode(const BenchArgs& a, const DenseDecodeShape& s, const cudaDeviceProp& prop,
                                         bool step = false) {
  const int seq_pages = (s.tokens + s.page_size - 1) / s.page_size, pages = s.batch * seq_pages;
  const size_t pool = size_t(pages) * s.num_kv_heads * s.page_size * s.head_dim;  // elements of K (or V)
  const int rot = static_cast<int>(std::max<double>(2, std::ceil(4.0 * prop.l2CacheSize / (4.0 * pool))));
  std::vector<__nv_bfloat16*> kv(2 * rot);
  for (int i = 0; i < 2 * rot; ++i) {
    BENCH_CHECK(cudaMalloc(&kv[i], pool * 2));
    FillRandomBf16<<<1024, 256>>>(kv[i], pool, 100 + i);
  }
  std::vector<int32_t> ids(pages);
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937 rng(s.tokens);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::vector<int32_t> lens_host(s.batch, s.tokens);
  DenseDecodeTiming t;
  t.splits = PlanDenseDecodeSplits(s.batch, s.num_heads, s.num_kv_heads, s.tokens, prop.multiProcessorCount);
  const DenseDecodeWorkspaceBytes ws = DenseDecodeWorkspace(s.batch, s.num_heads, t.splits, s.head_dim);
  const size_t qo = size_t(s.batch) * s.num_heads * s.head_dim;
  int32_t *table = nullptr, *lens = nullptr;
  __nv_bfloat16 *q = nullptr, *out = nullptr;
  float *po = nullptr, *pl = nullptr;
  BENCH_CHECK(cudaMalloc(&table, pages * 4));
  BENCH_CHECK(cudaMalloc(&lens, s.batch * 4));
  BENCH_CHECK(cudaMalloc(&q, qo * 2));
  BENCH_CHECK(cudaMalloc(&out, qo * 2));
  BENCH_CHECK(cudaMalloc(&po, std::max<size_t>(ws.partial_out, 16)));
  BENCH_CHECK(cudaMalloc(&pl, std::max<size_t>(ws.partial_lse, 16)));
  BENCH_CHECK(cudaMemcpy(table, ids.data(), pages * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMemcpy(lens, lens_host.data(), s.batch * 4, cudaMemcpyHostToDevice));
  FillRandomBf16<<<8, 256>>>(q, qo, 5);
  BENCH_CHECK(cudaGetLastError());
  auto params = [&](int i) {
    DenseDecodeParams p;
    p.q = q, p.k_pool = kv[2 * (i % rot)], p.v_pool = kv[2 * (i % rot) + 1], p.block_table = table;
    p.seq_lens = lens, p.out = out, p.partial_out = t.splits > 1 ? po : nullptr;
    p.partial_lse = t.splits > 1 ? pl : nullptr;
    p.batch = s.batch, p.num_heads = s.num_heads, p.num_kv_heads = s.num_kv_heads, p.head_dim = s.head_dim;
    p.page_size = s.page_size, p.num_blocks = pages, p.max_blocks_per_seq = seq_pages, p.max_seq_len = s.tokens;
    p.num_splits = t.splits, p.scale = 1.0f / std::sqrt(float(s.head_dim)), p.dtype = KvDType::kBf16;
    return p;
  };
  if (step) {  // as many launches as a Llama-3-8B step's layers, pools cycled
    const int n = rot * ((kStepLayers + rot - 1) / rot);
    t.us = StepUs(a, n, [&](int i, cudaStream_t st) { return LaunchDenseDecode(params(i), st); });
  } else {
    t.us = MedianUs(a, [&](int i) { return LaunchDenseDecode(params(i), nullptr); });
  }
  for (auto* p : kv) cudaFree(p);
  cudaFree(table), cudaFree(lens), cudaFree(q), cudaFree(out), cudaFree(po), cudaFree(pl);
  return t;
}

}  // namespace kvstream::bench
