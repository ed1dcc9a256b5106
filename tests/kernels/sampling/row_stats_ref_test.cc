// CPU twin of row_stats: the first maximum wins ties, lse equals a naive
// fp64 log-sum-exp, a row of -inf is (-inf, 0, -inf), strided rows read only
// their own columns, next_token repeats the argmax, and invalid params are refused naming the field.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/sampling/row_stats.h"

namespace kvstream {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(RowStatsRef, FirstMaximumWinsAndLseIsTheLogPartition) {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 4.0f);
  const int B = 3, V = 1000, ld = 1003;
  std::vector<float> x(size_t(B) * ld, 1e30f);  // padding columns: would win if read
  for (int r = 0; r < B; ++r)
    for (int v = 0; v < V; ++v) x[size_t(r) * ld + v] = g(rng);
  x[0 * ld + 17] = x[0 * ld + 400] = 50.0f;  // tie: 17 wins
  for (int v = 0; v < V; ++v) x[size_t(2) * ld + v] = -kInf;
  std::vector<RowStats> out(B);
  std::vector<int64_t> next(B, -1);
  RowStatsParams p;
  p.logits = x.data(), p.out = out.data(), p.ld = ld, p.rows = B, p.vocab = V, p.dtype = KvDType::kFp32;
  p.next_token = next.data();
  ASSERT_TRUE(RowStatsRef(p));
  for (int r = 0; r < B; ++r) EXPECT_EQ(next[r], out[r].argmax) << r;  // the greedy token fed forward
  EXPECT_EQ(out[0].argmax, 17);
  EXPECT_EQ(out[0].max_logit, 50.0f);
  for (int r = 0; r < 2; ++r) {
    double m = -kInf, s = 0.0;
    int arg = 0;
    for (int v = 0; v < V; ++v)
      if (x[size_t(r) * ld + v] > m) m = x[size_t(r) * ld + v], arg = v;
    for (int v = 0; v < V; ++v) s += std::exp(double(x[size_t(r) * ld + v]) - m);
    EXPECT_EQ(out[r].argmax, arg);
    EXPECT_NEAR(out[r].lse, m + std::log(s), 1e-5);
  }
  EXPECT_EQ(out[2].max_logit, -kInf);
  EXPECT_EQ(out[2].argmax, 0);
  EXPECT_EQ(out[2].lse, -kInf);
}

TEST(RowStatsRef, InvalidParamsAreRefusedNamingTheField) {
  float x = 0.0f;
  RowStats o;
  RowStatsParams p;
  p.logits = &x, p.out = &o, p.rows = 1, p.vocab = 0;
  EXPECT_STREQ(RowStatsValidate(p), "vocab must be >= 1");
  p.vocab = 4, p.ld = 2;
  EXPECT_STREQ(RowStatsValidate(p), "ld must be 0 or >= vocab");
  p.ld = 0, p.out = nullptr;
  EXPECT_STREQ(RowStatsValidate(p), "logits and out must be non-null");
  EXPECT_FALSE(RowStatsRef(p));
}

}  // namespace
}  // namespace kvstream
