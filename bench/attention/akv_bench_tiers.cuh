// Shared by the AKV attention benches (akv_attention_bench: one sequence;
// akv_attention_batch_bench: a batch as the engine serves it): the Llama-3-8B
// layer shape, tiers filled on the device, akv.md §7 bytes, and the dense
// paged decode kernel timed on the same tokens for the side-by-side ratio.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bench/attention/bench_common.cuh"
#include "bench/attention/dense_decode_timer.cuh"
#include "kernels/akv/akv_attention.h"

namespace kvstream::akv_bench {

using bench::BenchArgs;
using bench::FillRandomBf16;
using bench::HashIndex;
using bench::MedianUs;

inline constexpr int kHq = 32, kHkv = 8, kD = 128, kGroup = 128, kNHot = 1024, kP = 16;
inline constexpr double kMemBudget = 16e9;  // stacked AKV tiers; dense pools are freed before (total < ~20 GB)

// Random 32-bit words: warm codes over the full byte range (every b-bit field
// of any byte is a valid code).
__global__ void FillRandomU32(uint32_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    p[i] = HashIndex(i, seed);
  }
}
// fp16 bits of values uniform in [lo, hi): warm scales and zeros.
__global__ void FillFp16Bits(uint16_t* p, size_t n, float lo, float hi, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float u = static_cast<float>(HashIndex(i, seed)) * (1.0f / 4294967296.0f);
    p[i] = __half_as_ushort(__float2half_rn(lo + (hi - lo) * u));
  }
}
// Row r of every layer (rows per layer each) holds position base + r.
__global__ void FillPositions(int32_t* p, size_t n, int rows, int base) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    p[i] = base + static_cast<int>(i % rows);
  }
}

template <class T>
void DevAlloc(T** p, size_t bytes) { BENCH_CHECK(cudaMalloc(p, bytes)); }

// akv.md §7 bytes of one decode step (formula in the header comment).
inline double AkvStepBytes(int bits, int n_warm, int n_hot = kNHot) {
  const double e = 2.0, gn = double(kD) / kGroup;
  return double(n_hot) * 2 * kHkv * kD * e + double(n_warm) * 2 * kHkv * (kD * bits / 8.0 + 4 * gn) +
         4.0 * (n_hot + n_warm) + 2.0 * kHq * kD * e;
}
inline double DenseStepBytes(int tokens) { return 2.0 * tokens * kHkv * kD * 2 + 2.0 * kHq * kD * 2; }

// Tiers of L layers for one (bits, n_warm), capacities = live rows, filled on
// the device. Hot rows hold positions n_warm.., warm rows 0.. (hot = recent);
// all distinct and < q_pos = n_hot + n_warm, so every row is attended.
class AkvSet {
 public:
  AkvSet(int bits, int n_warm, int layers, int n_hot = kNHot) {
    lay_.num_kv_heads = kHkv, lay_.head_dim = kD, lay_.warm_bits = bits, lay_.group_size = kGroup;
    lay_.hot_capacity = n_hot, lay_.warm_capacity = n_warm, lay_.dtype = KvDType::kBf16;
    const size_t L = layers, hot = L * lay_.HotLayerElems(), codes = L * lay_.WarmLayerBytes();
    const size_t groups = L * lay_.WarmLayerGroups(), hrows = L * n_hot, wrows = L * size_t(n_warm);
    const uint32_t seed = 977u * bits + 31u * n_warm;
    __nv_bfloat16 *hk = Alloc<__nv_bfloat16>(hot), *hv = Alloc<__nv_bfloat16>(hot);
    FillRandomBf16<<<1024, 256>>>(hk, hot, seed + 1);
    FillRandomBf16<<<1024, 256>>>(hv, hot, seed + 2);
    t_.hot_k = hk, t_.hot_v = hv;
    t_.warm_k = Alloc<uint8_t>(codes), t_.warm_v = Alloc<uint8_t>(codes);
    FillRandomU32<<<1024, 256>>>(reinterpret_cast<uint32_t*>(t_.warm_k), codes / 4, seed + 3);  // Cb % 4 == 0
    FillRandomU32<<<1024, 256>>>(reinterpret_cast<uint32_t*>(t_.warm_v), codes / 4, seed + 4);
    uint16_t** sz[4] = {&t_.warm_k_scale, &t_.warm_k_zero, &t_.warm_v_scale, &t_.warm_v_zero};
    for (int i = 0; i < 4; ++i) {
      *sz[i] = Alloc<uint16_t>(groups);
      const bool zero = i % 2 == 1;  // scale in [0.01, 0.1), zero in [-1, 0)
      FillFp16Bits<<<256, 256>>>(*sz[i], groups, zero ? -1.0f : 0.01f, zero ? 0.0f : 0.1f, seed + 5 + i);
    }
    t_.hot_pos = Alloc<int32_t>(hrows), t_.warm_pos = Alloc<int32_t>(wrows);
    FillPositions<<<256, 256>>>(t_.hot_pos, hrows, n_hot, n_warm);
    FillPositions<<<256, 256>>>(t_.warm_pos, wrows, n_warm, 0);
    // Scores are not read by attention but the validator wants them non-null.
    t_.hot_score = Alloc<float>(hrows), t_.warm_score = Alloc<float>(wrows), t_.warm_a = Alloc<float>(wrows);
    std::vector<int32_t> counts(L * kAkvCountSlots, 0);
    for (size_t l = 0; l < L; ++l) {
      counts[l * kAkvCountSlots + kAkvNHot] = n_hot;
      counts[l * kAkvCountSlots + kAkvNWarm] = n_warm;
    }
    t_.counts = Alloc<int32_t>(counts.size());
    BENCH_CHECK(cudaMemcpy(t_.counts, counts.data(), counts.size() * 4, cudaMemcpyHostToDevice));
    BENCH_CHECK(cudaGetLastError());
    BENCH_CHECK(cudaDeviceSynchronize());
  }
  ~AkvSet() {
    for (void* p : allocs_) cudaFree(p);
  }
  AkvSet(const AkvSet&) = delete;
  AkvSet& operator=(const AkvSet&) = delete;
  const AkvLayout& layout() const { return lay_; }
  const AkvTiers& tiers() const { return t_; }

 private:
  template <class T>
  T* Alloc(size_t n) {
    void* p = nullptr;
    BENCH_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
    allocs_.push_back(p);
    return static_cast<T*>(p);
  }
  AkvLayout lay_;
  AkvTiers t_;
  std::vector<void*> allocs_;
};

// Dense bf16 paged decode of `batch` sequences of `tokens` each (one launch,
// bench/attention/dense_decode_timer.cuh): median us, planned splits in *splits.
inline float DenseUs(const BenchArgs& a, int batch, int tokens, const cudaDeviceProp& prop, int* splits,
                     bool step = false) {
  bench::DenseDecodeShape shape;
  shape.batch = batch, shape.tokens = tokens, shape.num_heads = kHq, shape.num_kv_heads = kHkv;
  shape.head_dim = kD, shape.page_size = kP;
  const bench::DenseDecodeTiming t = bench::TimeDenseDecode(a, shape, prop, step);
  *splits = t.splits;
  return t.us;
}

// --bits: warm code widths, each 2, 4 or 8 (a usage error otherwise).
inline std::vector<int> AkvBitsList(const std::string& flag, const std::string& v) {
  std::vector<int> r = bench::ParseIntList(flag, v, 2, 8);
  for (const int b : r) {
    if (b != 2 && b != 4 && b != 8) {
      std::fprintf(stderr, "%s: %d is not 2, 4 or 8\n", flag.c_str(), b);
      std::exit(2);
    }
  }
  return r;
}

}  // namespace kvstream::akv_bench
