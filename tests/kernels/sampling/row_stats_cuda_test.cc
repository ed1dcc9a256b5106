// row_stats on the GPU vs its CPU twin: fresh random logits (fp32, bf16,
// fp16; vocabularies from 1 to 128256 with ragged tails), planted ties,
// +-large values and -inf columns, outputs poisoned. max and argmax exact;
// lse within 1e-4 absolute (fp32 sum of up to 128K terms vs fp64).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/sampling/row_stats.h"
#include "tests/kernels/cuda_test_util.h"

namespace kvstream {
namespace {

using testing::DeviceArena;

TEST(RowStatsCuda, MatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(77);
  std::normal_distribution<float> g(0.0f, 3.0f);
  for (KvDType dtype : {KvDType::kFp32, KvDType::kBf16, KvDType::kFp16}) {
    for (int V : {1, 31, 1000, 4097, 49152, 128256}) {
      const int B = 5, ld = V + 3;
      const std::string what = std::string(KvDTypeName(dtype)) + " V" + std::to_string(V);
      const size_t esz = KvDTypeSize(dtype);
      std::vector<uint8_t> x(size_t(B) * ld * esz);
      for (int r = 0; r < B; ++r) {
        for (int v = 0; v < ld; ++v) {
          float val = g(rng);
          if (v >= V) val = 6.0e4f;                       // padding: would win if read
          if (r == 1 && v < V && v % 7 == 0) val = -INFINITY;  // masked columns
          if (r == 3 && v < V) val = float(int(val));     // many ties
          if (r == 4 && v < V) val = -INFINITY;           // fully masked row
          StoreFromFloat(x.data(), size_t(r) * ld + v, val, dtype);
        }
      }
      if (V > 100) {  // a planted tie for the maximum in row 0: the lower index wins
        StoreFromFloat(x.data(), size_t(0) * ld + V / 3, 40.0f, dtype);
        StoreFromFloat(x.data(), size_t(0) * ld + V - 1, 40.0f, dtype);
      }
      std::vector<RowStats> want(B), poison(B);
      std::vector<int64_t> want_next(B, -7), next_poison(B, -7);
      std::memset(poison.data(), 0xFF, poison.size() * sizeof(RowStats));
      RowStatsParams p;
      p.ld = ld, p.rows = B, p.vocab = V, p.dtype = dtype;
      RowStatsParams hp = p, dp = p;
      hp.logits = x.data(), hp.out = want.data(), hp.next_token = want_next.data();
      ASSERT_TRUE(RowStatsRef(hp)) << what;
      DeviceArena arena;
      dp.logits = arena.Up(x);
      RowStats* dout = arena.Up(poison);
      dp.out = dout;
      int64_t* dnext = arena.Up(next_poison);
      dp.next_token = dnext;
      ASSERT_CUDA(LaunchRowStats(dp, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      std::vector<RowStats> got(B);
      ASSERT_CUDA(cudaMemcpy(got.data(), dout, B * sizeof(RowStats), cudaMemcpyDeviceToHost));
      std::vector<int64_t> got_next(B);
      ASSERT_CUDA(cudaMemcpy(got_next.data(), dnext, B * sizeof(int64_t), cudaMemcpyDeviceToHost));
      for (int r = 0; r < B; ++r) {
        EXPECT_EQ(got[r].argmax, want[r].argmax) << what << " row " << r;
        EXPECT_EQ(got_next[r], want[r].argmax) << what << " row " << r;  // the token fed to the next step
        EXPECT_EQ(want_next[r], want[r].argmax) << what << " row " << r;
        EXPECT_EQ(got[r].max_logit, want[r].max_logit) << what << " row " << r;
        if (std::isinf(want[r].lse)) {
          EXPECT_EQ(got[r].lse, want[r].lse) << what << " row " << r;
        } else {
          EXPECT_NEAR(got[r].lse, want[r].lse, 1e-4) << what << " row " << r;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvstream
