// K1 page_stats twin (entmax_kv.md §9 test 1): after a bulk pass and 45
// single-page appends across page boundaries, every page's min/max equal brute
// force exactly and mean/std are within 1e-5 / 1e-4 of an fp64 two-pass
// oracle, over the tokens present (a partial tail included).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/kernels/entmax_kv/entmax_problem.h"

namespace kvstream {
namespace {

using testing::EntmaxProblem;
using testing::EntmaxShape;
using testing::MakeEntmaxProblem;

void ExpectStatsMatchBruteForce(const EntmaxProblem& pr, EntmaxStatKind kind, int b) {
  const EntmaxShape& sh = pr.shape;
  const int P = sh.page_size, D = sh.head_dim;
  const EntmaxSeqPages s = EntmaxPagesOf(pr.seq_lens[b], P, pr.max_blocks);
  for (int pg = 0; pg < s.pages; ++pg) {
    const int64_t phys = pr.block_table[static_cast<size_t>(b) * pr.max_blocks + pg];
    const int n = std::min(P, s.tokens - pg * P);
    for (int g = 0; g < sh.kv_heads; ++g) {
      for (int d = 0; d < D; ++d) {
        const size_t si = static_cast<size_t>((phys * sh.kv_heads + g) * D + d);
        double lo = 1e30, hi = -1e30, sum = 0.0;
        for (int j = 0; j < n; ++j) {
          const double x = pr.K(b, g, pg * P + j, d);
          lo = std::min(lo, x);
          hi = std::max(hi, x);
          sum += x;
        }
        const double mean = sum / n;
        double ss = 0.0;
        for (int j = 0; j < n; ++j) ss += (pr.K(b, g, pg * P + j, d) - mean) * (pr.K(b, g, pg * P + j, d) - mean);
        const double sd = std::max(std::sqrt(ss / n), 1e-6);
        if (kind == EntmaxStatKind::kMinMax) {
          ASSERT_EQ(LoadAsFloat(pr.kmin.data(), si, sh.dtype), static_cast<float>(lo)) << "page " << pg << " d " << d;
          ASSERT_EQ(LoadAsFloat(pr.kmax.data(), si, sh.dtype), static_cast<float>(hi)) << "page " << pg << " d " << d;
        } else {
          ASSERT_NEAR(pr.kmean[si], mean, 1e-5) << "page " << pg << " d " << d;
          ASSERT_NEAR(pr.kstd[si], sd, 1e-4) << "page " << pg << " d " << d;
        }
      }
    }
  }
}

class PageStatsTwin : public ::testing::TestWithParam<std::tuple<EntmaxStatKind, KvDType, int>> {};

TEST_P(PageStatsTwin, BulkThenAppendsAcrossPageBoundariesMatchBruteForce) {
  const auto [kind, dtype, page_size] = GetParam();
  EntmaxShape sh;
  sh.batch = 2;
  sh.kv_heads = 3;
  sh.heads = 3;
  sh.page_size = page_size;
  sh.dtype = dtype;
  sh.seq_lens = {37 + 45, 5 + 45};  // pool sized for the final lengths
  EntmaxProblem pr = MakeEntmaxProblem(sh, 11);
  pr.seq_lens = {37, 5};
  ASSERT_TRUE(testing::FillStats(&pr, kind));
  for (int b = 0; b < 2; ++b) ExpectStatsMatchBruteForce(pr, kind, b);
  for (int step = 0; step < 45; ++step) {
    for (int32_t& t : pr.seq_lens) ++t;  // append one token, then recompute its page (§4 step 1)
    EntmaxPageStatsParams p;
    p.kv = pr.Kv();
    p.stats = pr.Stats();
    p.kind = kind;
    p.recent_pages = 1;
    ASSERT_TRUE(EntmaxPageStatsRef(p));
  }
  for (int b = 0; b < 2; ++b) ExpectStatsMatchBruteForce(pr, kind, b);
}

INSTANTIATE_TEST_SUITE_P(KindsDtypesPages, PageStatsTwin,
                         ::testing::Combine(::testing::Values(EntmaxStatKind::kMinMax, EntmaxStatKind::kMeanStd),
                                            ::testing::Values(KvDType::kFp32, KvDType::kBf16),
                                            ::testing::Values(8, 16)));

TEST(PageStatsTwinEdges, ConstantPageStdIsFloored) {
  EntmaxShape sh;
  sh.kv_heads = sh.heads = 1;
  sh.seq_lens = {16};
  EntmaxProblem pr = MakeEntmaxProblem(sh, 3);
  for (int t = 0; t < 16; ++t)
    for (int d = 0; d < sh.head_dim; ++d) pr.SetK(0, 0, t, d, 0.25f);
  ASSERT_TRUE(testing::FillStats(&pr, EntmaxStatKind::kMeanStd));
  const int64_t phys = pr.block_table[0];
  EXPECT_EQ(pr.kmean[phys * sh.head_dim], 0.25f);
  EXPECT_EQ(pr.kstd[phys * sh.head_dim], kEntmaxStdFloor);
}

TEST(PageStatsTwinEdges, RecentPagesLeavesOlderPagesUntouched) {
  EntmaxShape sh;
  sh.kv_heads = sh.heads = 1;
  sh.seq_lens = {50};  // pages 0..3, tail of 2 tokens
  EntmaxProblem pr = MakeEntmaxProblem(sh, 5);
  std::fill(pr.kmean.begin(), pr.kmean.end(), -99.0f);
  std::fill(pr.kstd.begin(), pr.kstd.end(), -99.0f);
  EntmaxPageStatsParams p;
  p.kv = pr.Kv();
  p.stats = pr.Stats();
  p.kind = EntmaxStatKind::kMeanStd;
  p.recent_pages = 2;
  ASSERT_TRUE(EntmaxPageStatsRef(p));
  for (int pg = 0; pg < 4; ++pg) {
    const float v = pr.kmean[static_cast<size_t>(pr.block_table[pg]) * sh.head_dim];
    if (pg < 2) EXPECT_EQ(v, -99.0f) << pg; else EXPECT_NE(v, -99.0f) << pg;
  }
}

TEST(PageStatsTwinEdges, RejectsOutOfRangePageIdWithoutWriting) {
  EntmaxShape sh;
  sh.kv_heads = sh.heads = 1;
  sh.seq_lens = {40};
  EntmaxProblem pr = MakeEntmaxProblem(sh, 7);
  pr.block_table[1] = pr.num_blocks;  // page 1 -> outside the pool
  std::fill(pr.kmean.begin(), pr.kmean.end(), -99.0f);
  EntmaxPageStatsParams p;
  p.kv = pr.Kv();
  p.stats = pr.Stats();
  p.kind = EntmaxStatKind::kMeanStd;
  p.recent_pages = 8;
  EXPECT_FALSE(EntmaxPageStatsRef(p));
  EXPECT_TRUE(std::all_of(pr.kmean.begin(), pr.kmean.end(), [](float v) { return v == -99.0f; }));
}

TEST(PageStatsTwinEdges, ValidateNamesTheBadField) {
  EntmaxPageStatsParams p;
  EXPECT_NE(EntmaxPageStatsValidate(p), nullptr);
  EntmaxShape sh;
  EntmaxProblem pr = MakeEntmaxProblem(sh, 1);
  p.kv = pr.Kv();
  p.stats = pr.Stats();
  EXPECT_EQ(EntmaxPageStatsValidate(p), nullptr);
  p.recent_pages = 0;
  EXPECT_STREQ(EntmaxPageStatsValidate(p), "recent_pages must be >= 1");
  p.recent_pages = 1;
  p.kv.page_size = 12;
  EXPECT_STREQ(EntmaxPageStatsValidate(p), "kv.page_size must be 8, 16, 32 or 64");
}

}  // namespace
}  // namespace kvstream
