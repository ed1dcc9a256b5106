// LaunchPagedAppend vs its twin: strided k/v rows scattered to shuffled pool
// rows, bit-exact; untouched pool rows keep their NaN poison. Skips without
// a CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/dense/paged_append.h"
#include "tests/kernels/cuda_test_util.h"

namespace kvstream {
namespace {

TEST(PagedAppendCuda, ScatterEqualsTwinBitExact) {
  SKIP_WITHOUT_DEVICE();
  const int R = 5, Hkv = 8, D = 128, pool_rows = 4 * Hkv * 16;
  const int64_t stride = (32 + 2 * Hkv) * D;  // rows of a fused qkv
  std::mt19937 rng(7);
  std::vector<uint16_t> qkv(R * stride);
  for (auto& x : qkv) x = static_cast<uint16_t>(rng() & 0x7f7f);
  std::vector<int64_t> slots(pool_rows);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(R * Hkv);
  std::vector<uint16_t> kpool(pool_rows * D, 0x7fc0), vpool = kpool;
  const uint16_t* k = qkv.data() + 32 * D;
  const uint16_t* v = qkv.data() + (32 + Hkv) * D;
  void *dqkv, *dk, *dv;
  int64_t* dslots;
  ASSERT_EQ(cudaMalloc(&dqkv, qkv.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dk, kpool.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dv, vpool.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dslots), slots.size() * 8), cudaSuccess);
  cudaMemcpy(dqkv, qkv.data(), qkv.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dk, kpool.data(), kpool.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dv, vpool.data(), vpool.size() * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(dslots, slots.data(), slots.size() * 8, cudaMemcpyHostToDevice);
  PagedAppendParams p{static_cast<uint16_t*>(dqkv) + 32 * D, static_cast<uint16_t*>(dqkv) + (32 + Hkv) * D,
                      dslots, dk, dv, stride, pool_rows, R, Hkv, D, KvDType::kBf16};
  ASSERT_EQ(LaunchPagedAppend(p, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  PagedAppendParams h{k, v, slots.data(), kpool.data(), vpool.data(), stride, pool_rows, R, Hkv, D, KvDType::kBf16};
  ASSERT_TRUE(PagedAppendRef(h));
  std::vector<uint16_t> gk(kpool.size()), gv(vpool.size());
  cudaMemcpy(gk.data(), dk, gk.size() * 2, cudaMemcpyDeviceToHost);
  cudaMemcpy(gv.data(), dv, gv.size() * 2, cudaMemcpyDeviceToHost);
  EXPECT_EQ(gk, kpool);
  EXPECT_EQ(gv, vpool);
  EXPECT_EQ(std::count(gk.begin(), gk.end(), 0x7fc0), (pool_rows - R * Hkv) * D) << "only the slots are written";
  for (void* d : {dqkv, dk, dv, static_cast<void*>(dslots)}) cudaFree(d);
}

}  // namespace
}  // namespace kvstream
