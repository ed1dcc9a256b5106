// K2 page_criticality and K3 topk_pack twins (entmax_kv.md §4 step 3a, §9
// tests 2 and 6): U is an upper bound of every q.k in its page (random and
// adversarial keys), SHARED_KV is the group max of the per-head bounds, and the
// packed lists equal an independent oracle (sinks, top-n with ties to the
// lower index, tail last), with the dense-fallback and short-sequence edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "tests/kernels/entmax_kv/entmax_problem.h"

namespace kvstream {
namespace {

using testing::EntmaxProblem;
using testing::EntmaxShape;
using testing::MakeEntmaxProblem;
using testing::SelectionBuffers;

std::vector<float> Criticality(EntmaxProblem* pr, int hs) {
  std::vector<float> u(static_cast<size_t>(pr->shape.batch) * hs * pr->max_blocks, -123.0f);
  EntmaxCriticalityParams p;
  p.kv = pr->Kv();
  p.query = pr->Query();
  p.stats = pr->Stats();
  p.u = u.data();
  p.select_heads = hs;
  EXPECT_TRUE(EntmaxCriticalityRef(p));
  return u;
}

class CriticalityBound : public ::testing::TestWithParam<std::tuple<KvDType, int>> {};

TEST_P(CriticalityBound, UpperBoundsEveryKeyScoreInItsPage) {
  const auto [dtype, adversarial] = GetParam();
  EntmaxShape sh;
  sh.batch = 2;
  sh.heads = 8;
  sh.kv_heads = 2;
  sh.dtype = dtype;
  sh.seq_lens = {16 * 9 + 3, 16 * 4};
  EntmaxProblem pr = MakeEntmaxProblem(sh, 21 + adversarial);
  if (adversarial) {
    // Keys aligned with +/- the query of head 0 of their group, one per page at
    // the extremes: the bound must be tight-or-above even where a single key
    // dominates a page.
    for (int b = 0; b < sh.batch; ++b)
      for (int g = 0; g < sh.kv_heads; ++g)
        for (int t = 0; t < sh.seq_lens[b]; ++t)
          for (int d = 0; d < sh.head_dim; ++d)
            pr.SetK(b, g, t, d, (t % 3 == 0 ? 4.0f : -4.0f) * pr.Q(b, g * 4, d) + 0.01f * (t % 7));
  }
  ASSERT_TRUE(testing::FillStats(&pr, EntmaxStatKind::kMinMax));
  const std::vector<float> u = Criticality(&pr, sh.heads);  // per query head
  for (int b = 0; b < sh.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(pr.seq_lens[b], sh.page_size, pr.max_blocks);
    for (int h = 0; h < sh.heads; ++h) {
      for (int pg = 0; pg < s.hist; ++pg) {
        double best = -1e30;
        for (int t = pg * 16; t < pg * 16 + 16; ++t) {
          double dot = 0.0;
          for (int d = 0; d < sh.head_dim; ++d) dot += static_cast<double>(pr.Q(b, h, d)) * pr.K(b, h / 4, t, d);
          best = std::max(best, dot);
        }
        const float ub = u[(static_cast<size_t>(b) * sh.heads + h) * pr.max_blocks + pg];
        EXPECT_GE(ub, best - 1e-4 * (1.0 + std::fabs(best))) << "b " << b << " h " << h << " page " << pg;
      }
      // Pages past P_hist (the tail) are never written.
      EXPECT_EQ(u[(static_cast<size_t>(b) * sh.heads + h) * pr.max_blocks + s.hist], -123.0f);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RandomAndAdversarial, CriticalityBound,
                         ::testing::Combine(::testing::Values(KvDType::kFp32, KvDType::kBf16), ::testing::Values(0, 1)));

TEST(Criticality, SharedKvIsGroupMaxOfPerHeadBounds) {
  for (int kv_heads : {8, 2, 1}) {  // G = 1, 4, 8
    EntmaxShape sh;
    sh.heads = 8;
    sh.kv_heads = kv_heads;
    sh.seq_lens = {16 * 6 + 1};
    EntmaxProblem pr = MakeEntmaxProblem(sh, 31);
    ASSERT_TRUE(testing::FillStats(&pr, EntmaxStatKind::kMinMax));
    const std::vector<float> per_head = Criticality(&pr, 8), shared = Criticality(&pr, kv_heads);
    const int G = 8 / kv_heads;
    for (int g = 0; g < kv_heads; ++g) {
      for (int pg = 0; pg < 6; ++pg) {
        float m = -1e30f;
        for (int h = g * G; h < (g + 1) * G; ++h) m = std::max(m, per_head[h * pr.max_blocks + pg]);
        EXPECT_EQ(shared[g * pr.max_blocks + pg], m) << "G " << G << " g " << g << " page " << pg;
      }
    }
  }
}

// ---- K3 ----------------------------------------------------------------------------

// Independent oracle: sinks, then the best remaining by (U desc, index asc), then tail.
std::vector<int> OracleTopk(const std::vector<float>& u, int t, int P, int budget, int sinks, int min_context) {
  const int pages = (t + P - 1) / P, hist = std::max(pages - 1, 0);
  std::vector<int> keep;
  if (pages == 0) return keep;
  if (t < min_context || budget >= hist) {
    for (int i = 0; i < pages; ++i) keep.push_back(i);
    return keep;
  }
  const int ns = std::min(sinks, budget);
  std::vector<int> rest;
  for (int i = ns; i < hist; ++i) rest.push_back(i);
  std::sort(rest.begin(), rest.end(), [&](int a, int b) {
    const float ua = std::isnan(u[a]) ? -INFINITY : u[a], ub = std::isnan(u[b]) ? -INFINITY : u[b];
    return ua != ub ? ua > ub : a < b;
  });
  for (int i = 0; i < ns; ++i) keep.push_back(i);
  for (int i = 0; i < budget - ns; ++i) keep.push_back(rest[i]);
  std::sort(keep.begin(), keep.end());
  keep.push_back(pages - 1);
  return keep;
}

struct PackCase {
  std::vector<int> seq_lens;
  int budget, sinks, min_context;
  bool ties;
};

void RunPack(const PackCase& c, uint32_t seed) {
  const int P = 16, hs = 3, B = static_cast<int>(c.seq_lens.size());
  int mb = 1;
  for (int t : c.seq_lens) mb = std::max(mb, (t + P - 1) / P);
  std::mt19937 rng(seed);
  std::vector<float> u(static_cast<size_t>(B) * hs * mb);
  for (float& x : u) x = c.ties ? static_cast<float>(rng() % 3) : std::normal_distribution<float>()(rng);
  if (u.size() > 4 && !c.ties) u[2] = NAN;
  SelectionBuffers sel(B, hs, mb);
  EntmaxTopkPackParams p;
  p.u = u.data();
  p.seq_lens = c.seq_lens.data();
  p.batch = B;
  p.page_size = P;
  p.max_blocks_per_seq = mb;
  p.sel = sel.View();
  p.budget_pages = c.budget;
  p.sink_pages = c.sinks;
  p.min_context = c.min_context;
  ASSERT_TRUE(EntmaxTopkPackRef(p));
  for (int b = 0; b < B; ++b) {
    for (int l = 0; l < hs; ++l) {
      const size_t row = static_cast<size_t>(b) * hs + l;
      const std::vector<float> ur(u.begin() + row * mb, u.begin() + (row + 1) * mb);
      const std::vector<int> want = OracleTopk(ur, c.seq_lens[b], P, c.budget, c.sinks, c.min_context);
      EXPECT_EQ(sel.List(b, l), want) << "b " << b << " l " << l;
      int tokens = 0;
      for (int pg : want) tokens += std::min(P, c.seq_lens[b] - pg * P);
      EXPECT_EQ(sel.sel_len[row], tokens) << "b " << b << " l " << l;
    }
  }
}

TEST(TopkPack, MatchesSortOracleWithSinksAndNanScores) {
  RunPack({{16 * 40 + 5, 16 * 13, 16 * 30 + 16}, 7, 1, 0, false}, 1);
  RunPack({{16 * 40 + 5, 16 * 13}, 7, 0, 0, false}, 2);
  RunPack({{16 * 40 + 5, 16 * 13}, 7, 7, 0, false}, 3);  // sinks fill the whole budget
}

TEST(TopkPack, TiesGoToTheLowerPageIndex) { RunPack({{16 * 64 + 9, 16 * 20 + 1}, 5, 0, 0, true}, 4); }

TEST(TopkPack, BudgetCoveringHistoryFallsBackToAllPages) {
  RunPack({{16 * 6 + 3, 16 * 5}, 6, 1, 0, false}, 5);  // budget 6 >= P_hist 6 and 4
}

TEST(TopkPack, MinContextFallsBackToAllPages) { RunPack({{16 * 30, 16 * 50 + 1}, 4, 1, 16 * 40, false}, 6); }

TEST(TopkPack, OnePageAndEmptySequencesSelectOnlyTheTail) {
  RunPack({{1, 16, 0, 17}, 1, 1, 0, false}, 7);  // T=1, T=P: tail only; T=0: nothing; T=P+1: page 0 + tail
}

TEST(TopkPack, ValidateRejectsZeroBudget) {
  EntmaxTopkPackParams p;
  p.page_size = 16;
  p.max_blocks_per_seq = 4;
  p.sel.select_heads = 1;
  EXPECT_STREQ(EntmaxTopkPackValidate(p), "budget_pages must be >= 1 (token_budget >= page_size)");
}

// K3's planner (shapes only, so graphs keep their grid): one CTA per row under
// 16384 pages (measured as fast there), else the power of two >= sqrt(MB *
// budget) in [256, 4096].
TEST(TopkPack, ChunkPlannerBalancesTheTwoStages) {
  EXPECT_EQ(EntmaxTopkChunkPages(2048, 128), 0);      // 32K tokens
  EXPECT_EQ(EntmaxTopkChunkPages(8192, 128), 0);      // 128K: one CTA per row
  EXPECT_EQ(EntmaxTopkChunkPages(32768, 128), 2048);  // 512K: C = 16
  EXPECT_EQ(EntmaxTopkChunkPages(16384, 1), 256);
  EXPECT_EQ(EntmaxTopkChunkPages(1 << 20, 4096), 4096);
  EXPECT_EQ(EntmaxTopkChunkPages(16384, 128), 2048);  // 256K: C = 8
  EntmaxTopkPackParams p;
  p.page_size = 16, p.max_blocks_per_seq = 4, p.sel.select_heads = 1, p.budget_pages = 1, p.chunk_pages = -2;
  EXPECT_NE(EntmaxTopkPackValidate(p), nullptr);
}

}  // namespace
}  // namespace kvstream
