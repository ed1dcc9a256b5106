// CPU tests of the AKV attention and score-update twins against independent
// naive fp64 computations (akv.md §9 tests 2 and 5): hot-only, warm-only,
// mixed and empty tiers, GQA 1/3/4/8, bits x groups, dtypes, causal prefill by
// stored positions, lse, split-K merge, stacked layers, batched decode rows
// over their own tiers; IMPORTANCE and HYBRID scores.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/akv/akv.h"
#include "tests/kernels/akv/akv_problem.h"

namespace kvstream {
namespace {

using testing::AkvProblem;
using testing::AkvShape;
using testing::MakeAkvProblem;
using testing::NaiveAkvAttention;
using testing::OutBound;
using testing::RelErr;
using testing::ToDoubles;

// Streams its arguments into a label (gcc 12 warns on chained string +).
template <class... A>
std::string Cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

struct TwinOut {
  std::vector<double> out;
  std::vector<float> lse;
};

TwinOut RunTwin(AkvProblem& pr, int layer = 0, int splits = 1) {
  std::vector<uint8_t> out(pr.OutElems() * KvDTypeSize(pr.s.dtype));
  testing::PoisonOut(out.data(), pr.OutElems(), pr.s.dtype);
  TwinOut r;
  r.lse.assign(static_cast<size_t>(pr.s.rows) * pr.s.num_heads, 123.0f);
  const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(pr.s.rows, pr.s.num_heads, splits, pr.s.head_dim);
  std::vector<float> po(ws.partial_out / 4 + 1), pl(ws.partial_lse / 4 + 1);
  EXPECT_TRUE(AkvAttentionRef(pr.Attention(out.data(), r.lse.data(), layer, splits, po.data(), pl.data())));
  r.out = ToDoubles(out.data(), pr.OutElems(), pr.s.dtype);
  return r;
}

void ExpectMatchesNaive(AkvProblem& pr, const std::string& what, int layer = 0, int splits = 1) {
  const TwinOut got = RunTwin(pr, layer, splits);
  const testing::NaiveResult want = NaiveAkvAttention(pr, layer);
  EXPECT_LT(RelErr(got.out, want.out), OutBound(pr.s.dtype)) << what;
  for (size_t i = 0; i < want.lse.size(); ++i) {
    if (std::isinf(want.lse[i])) {
      EXPECT_TRUE(std::isinf(got.lse[i]) && got.lse[i] < 0) << what << " lse " << i;
    } else {
      EXPECT_NEAR(got.lse[i], want.lse[i], 1e-5 * (1.0 + std::abs(want.lse[i]))) << what << " lse " << i;
    }
  }
}

// Batched decode: each row reads its own sequence's tiers at the launch's
// layer with that sequence's capacities (they differ, so a row that used the
// launch's capacities or another row's tiers would read poisoned slots).
TEST(AkvAttentionRef, BatchedRowsReadTheirOwnTiers) {
  for (KvDType dtype : {KvDType::kFp32, KvDType::kBf16}) {
    for (int bits : {2, 4, 8}) {
      std::vector<AkvShape> shapes(3);
      const int sizes[3][4] = {{40, 60, 7, 9}, {5, 300, 1, 30}, {100, 0, 3, 2}};  // n_hot, n_warm, spares
      for (int i = 0; i < 3; ++i) {
        AkvShape& s = shapes[i];
        s.dtype = dtype, s.bits = bits, s.num_heads = 8, s.num_kv_heads = 2, s.head_dim = 64, s.layers = 2;
        s.n_hot = sizes[i][0], s.n_warm = sizes[i][1], s.spare_hot = sizes[i][2], s.spare_warm = sizes[i][3];
      }
      testing::AkvBatch b = testing::MakeAkvBatch(shapes, 40 + bits);
      for (int splits : {1, 3}) {
        const std::string what = Cat(KvDTypeName(dtype), " b", bits, " S", splits);
        std::vector<uint8_t> out(b.OutElems() * KvDTypeSize(dtype));
        testing::PoisonOut(out.data(), b.OutElems(), dtype);
        std::vector<float> lse(static_cast<size_t>(b.rows()) * 8, 123.0f);
        const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(b.rows(), 8, splits, 64);
        std::vector<float> po(ws.partial_out / 4 + 1), pl(ws.partial_lse / 4 + 1);
        const std::vector<AkvAttnSeq> rows = b.HostRows(1);
        const AkvAttnBatch batch = testing::BatchOf(rows.data(), b.rows());
        ASSERT_TRUE(
            AkvAttentionRef(b.Attention(&batch, b.q.data(), out.data(), lse.data(), splits, po.data(), pl.data())))
            << what;
        const std::vector<double> got = ToDoubles(out.data(), b.OutElems(), dtype);
        for (int i = 0; i < b.rows(); ++i) {
          const testing::NaiveResult want = NaiveAkvAttention(b.prs[i], 1);
          const size_t n = want.out.size();
          const std::vector<double> row(got.begin() + i * n, got.begin() + (i + 1) * n);
          EXPECT_LT(RelErr(row, want.out), OutBound(dtype)) << what << " row " << i;
          for (int h = 0; h < 8; ++h)
            EXPECT_NEAR(lse[i * 8 + h], want.lse[h], 1e-5 * (1.0 + std::abs(want.lse[h]))) << what << " row " << i;
        }
      }
    }
  }
  // A row whose capacities exceed the launch layout's is refused, nothing written.
  std::vector<AkvShape> shapes(2);
  testing::AkvBatch b = testing::MakeAkvBatch(shapes, 9);
  std::vector<AkvAttnSeq> rows = b.HostRows(0);
  rows[1].hot_capacity = b.layout.hot_capacity + 1;
  const AkvAttnBatch batch = testing::BatchOf(rows.data(), b.rows());
  std::vector<float> out(b.OutElems(), 5.0f);
  EXPECT_FALSE(AkvAttentionRef(b.Attention(&batch, b.q.data(), out.data(), nullptr, 1, nullptr, nullptr)));
  EXPECT_EQ(out[0], 5.0f);
}

using Case = std::tuple<int, int, KvDType>;  // head_dim, group (Hq/Hkv), dtype

class AkvAttentionRefTest : public ::testing::TestWithParam<Case> {
 protected:
  AkvShape Shape() const {
    AkvShape s;
    s.head_dim = std::get<0>(GetParam());
    s.num_kv_heads = 2;
    s.num_heads = 2 * std::get<1>(GetParam());
    s.dtype = std::get<2>(GetParam());
    return s;
  }
};

TEST_P(AkvAttentionRefTest, MixedTiersMatchNaiveForEveryBitsAndGroup) {
  for (int bits : {2, 4, 8}) {
    for (int group : {32, 64, 128}) {
      AkvShape s = Shape();
      s.bits = bits;
      s.group_size = group;
      AkvProblem pr = MakeAkvProblem(s, 100 + bits * 7 + group);
      ExpectMatchesNaive(pr, Cat("b", bits, " g", group));
    }
  }
}

TEST_P(AkvAttentionRefTest, HotOnlyWarmOnlyAndEmptyTiersMatchNaive) {
  for (auto [n_hot, n_warm] : {std::pair{97, 0}, std::pair{0, 54}, std::pair{1, 0}, std::pair{0, 0}}) {
    AkvShape s = Shape();
    s.n_hot = n_hot;
    s.n_warm = n_warm;
    AkvProblem pr = MakeAkvProblem(s, 7 + n_hot + 3 * n_warm);
    ExpectMatchesNaive(pr, Cat("hot ", n_hot, " warm ", n_warm));
  }
}

TEST_P(AkvAttentionRefTest, CausalPrefillMasksByStoredPositions) {
  AkvShape s = Shape();
  s.rows = 16;
  s.n_hot = 50;  // 16 new rows + 34 older ones, warm rows interleave in position
  s.n_warm = 70;
  AkvProblem pr = MakeAkvProblem(s, 33);
  ExpectMatchesNaive(pr, "prefill");
  // Row 0 must not see rows 1..15: its output differs from row 15's view.
  const testing::NaiveResult full = NaiveAkvAttention(pr, 0);
  ASSERT_NE(full.lse[0], full.lse[static_cast<size_t>(15) * s.num_heads]);
}

INSTANTIATE_TEST_SUITE_P(HeadDimGroupDtype, AkvAttentionRefTest,
                         ::testing::Combine(::testing::Values(64, 128), ::testing::Values(1, 3, 4, 8),
                                            ::testing::Values(KvDType::kFp32, KvDType::kBf16, KvDType::kFp16)),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string name = "D";
                           name += std::to_string(std::get<0>(i.param));
                           name += "_G";
                           name += std::to_string(std::get<1>(i.param));
                           name += "_";
                           name += KvDTypeName(std::get<2>(i.param));
                           return name;
                         });

TEST(AkvAttentionRef, SplitMergeEqualsUnsplit) {
  AkvShape s;
  s.n_hot = 300;
  s.n_warm = 500;
  s.rows = 3;
  AkvProblem pr = MakeAkvProblem(s, 9);
  const TwinOut one = RunTwin(pr);
  for (int splits : {2, 5, 16, 128}) {
    const TwinOut got = RunTwin(pr, 0, splits);
    EXPECT_LT(RelErr(got.out, one.out), 1e-6) << splits << " splits";
    for (size_t i = 0; i < one.lse.size(); ++i) EXPECT_NEAR(got.lse[i], one.lse[i], 1e-5) << splits << " splits";
  }
}

TEST(AkvAttentionRef, SplitPartialsAreTheSplitsOwnSoftmax) {
  AkvShape s;
  s.n_hot = 20;
  s.n_warm = 40;  // 60 tokens, 4 splits of 16: the last split is warm only
  AkvProblem pr = MakeAkvProblem(s, 19);
  std::vector<float> out(pr.OutElems()), lse(s.num_heads);
  const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(1, s.num_heads, 4, s.head_dim);
  std::vector<float> po(ws.partial_out / 4), pl(ws.partial_lse / 4);
  ASSERT_TRUE(AkvAttentionRef(pr.Attention(out.data(), lse.data(), 0, 4, po.data(), pl.data())));
  for (int h = 0; h < s.num_heads; ++h) {
    double m = -INFINITY;
    for (int sp = 0; sp < 4; ++sp) m = std::max<double>(m, pl[h * 4 + sp]);
    double l = 0.0;
    for (int sp = 0; sp < 4; ++sp) l += std::exp(pl[h * 4 + sp] - m);
    EXPECT_NEAR(m + std::log(l), lse[h], 1e-5) << "head " << h;
  }
}

// Sequences whose attentions run side by side share the waves of CTAs: B of
// them each get 1/B of the waves' splits (never fewer than 1), so
// a batch does not launch B full waves of splits a few dozen tokens long.
TEST(AkvAttentionPlan, SideBySideSequencesShareTheWaves) {
  const int sms = 132, tokens = 1024 + 32768;  // H100; Llama-3-8B heads (32 / 8)
  // Tensor-core kernel: CTAs of 8 warps (all 8 KV heads), 16 warps per SM;
  // one sequence alone gets one wave, side-by-side ones share two.
  const int wave = 2 * 2 * sms, alone = PlanAkvAttentionSplits(1, 32, 8, tokens, sms);
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, tokens, sms, 1), alone);
  EXPECT_EQ(alone, std::min(wave / 2, kAkvAttnMaxSplits));
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, tokens, sms, 1, true), alone);  // a batched launch of one row too
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, 1024 + 8192, sms), (1024 + 8192) / kAkvAttnMmaMinSplitTokens);
  for (int b : {2, 4, 8}) {
    const int shared = PlanAkvAttentionSplits(1, 32, 8, tokens, sms, b);
    EXPECT_EQ(shared, std::min(wave / b, kAkvAttnMaxSplits)) << b << " side by side";
  }
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, tokens, sms, 100000), 1);
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, tokens, sms, 0), alone);   // < 1 counts as alone
  EXPECT_EQ(PlanAkvAttentionSplits(4, 32, 8, tokens, sms, 8), 1);      // prefill: never split
  // One batched launch over the side-by-side rows: four waves, up to eight
  // while splits keep >= 256 tokens.
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, 1024 + 8192, sms, 32, true), (1024 + 8192) / 256);
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, 1024 + 4096, sms, 32, true), 2 * wave / 32);
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, tokens, sms, 32, true), 4 * wave / 32);
  EXPECT_EQ(PlanAkvAttentionSplits(1, 32, 8, tokens, sms, 8, true), tokens / 256);
  // The CUDA-core path (G > 8) shares its wave the same way.
  const int wide = PlanAkvAttentionSplits(1, 64, 2, tokens, sms);
  EXPECT_LE(PlanAkvAttentionSplits(1, 64, 2, tokens, sms, 4) * 4, wide);
}

// The splits of a decode row tile [0, n_hot + n_warm) exactly once, in
// order; with both tiers live and S > 1 none mixes hot and warm rows, and a
// hot split holds ~1/kAkvAttnHotSplitWeight of a warm split's tokens
// (hot rows are bf16 and read without the copy ring).
TEST(AkvAttentionPlan, SplitsTileTheTokensAndKeepTiersApart) {
  for (const auto& [n_hot, n_warm] : {std::pair{1024, 32768}, {1024, 8192}, {16, 100}, {0, 500}, {700, 0}, {5, 3}}) {
    for (const int S : {1, 2, 3, 16, 144, 256, 528, 1024}) {
      int next = 0, hot_max = 0, warm_min = 1 << 30;
      for (int s = 0; s < S; ++s) {
        int b = -1, e = -1;
        AkvAttentionSplitRange(n_hot, n_warm, S, s, &b, &e);
        ASSERT_LE(b, e);
        if (b == e) continue;
        ASSERT_EQ(b, next) << n_hot << "/" << n_warm << " S=" << S << " split " << s;
        next = e;
        if (S > 1 && n_hot > 0 && n_warm > 0) {
          EXPECT_TRUE(e <= n_hot || b >= n_hot) << "split " << s << " mixes tiers: [" << b << ", " << e << ")";
          if (e <= n_hot) {
            hot_max = std::max(hot_max, e - b);
          } else if (e < n_hot + n_warm) {
            warm_min = std::min(warm_min, e - b);  // the last warm split may be short
          }
        }
      }
      EXPECT_EQ(next, n_hot + n_warm) << n_hot << "/" << n_warm << " S=" << S;
      if (S >= 16 && n_hot >= 1024 && warm_min < (1 << 30)) {  // rounding of the shares: within 25% + one block
        EXPECT_LE(hot_max * kAkvAttnHotSplitWeight, warm_min * 5 / 4 + kAkvAttnHotSplitWeight * kAkvAttnSplitAlign)
            << n_hot << "/" << n_warm << " S=" << S;
      }
    }
  }
}

TEST(AkvAttentionRef, StackedLayersReadTheirOwnSlice) {
  AkvShape s;
  s.layers = 3;
  s.dtype = KvDType::kBf16;
  AkvProblem pr = MakeAkvProblem(s, 77);
  pr.counts[2 * kAkvCountSlots + kAkvNWarm] = 10;  // layer 2 holds fewer warm rows
  for (int l = 0; l < 3; ++l) ExpectMatchesNaive(pr, Cat("layer ", l), l);
}

TEST(AkvAttentionRef, RejectsInvalidParams) {
  AkvShape s;
  AkvProblem pr = MakeAkvProblem(s, 1);
  std::vector<float> out(pr.OutElems());
  AkvAttentionParams p = pr.Attention(out.data(), nullptr);
  p.num_heads = 5;  // not a multiple of Hkv = 2
  EXPECT_FALSE(AkvAttentionRef(p));
  p = pr.Attention(out.data(), nullptr, 0, 3);  // no workspace
  EXPECT_FALSE(AkvAttentionRef(p));
  p = pr.Attention(out.data(), nullptr);
  p.layout.group_size = 16;
  EXPECT_FALSE(AkvAttentionRef(p));
}

// ---- score update ---------------------------------------------------------------------

AkvScoreParams ScoreParams(AkvProblem& pr, const std::vector<float>& lse, AkvScoring mode) {
  AkvScoreParams p;
  p.layout = pr.lay;
  p.tiers = pr.Tiers();
  p.q = pr.q.data();
  p.q_pos = pr.q_pos.data();
  p.lse = lse.data();
  p.num_rows = pr.s.rows;
  p.num_heads = pr.s.num_heads;
  p.scale = 1.0f / std::sqrt(static_cast<float>(pr.s.head_dim));
  p.mode = mode;
  p.decay = 0.3f;
  return p;
}

// a_j of query row i, from the naive attention's probabilities (fp64).
std::vector<double> NaiveShare(AkvProblem& pr, int i) {
  const AkvShape& s = pr.s;
  const int n = s.n_hot + s.n_warm;
  std::vector<double> a(n, 0.0);
  // One-hot values turn the naive output into the probability of each token.
  for (int j = 0; j < n; ++j) {
    AkvProblem probe = pr;
    for (int r = 0; r < s.n_hot; ++r)
      for (int e = 0; e < s.num_kv_heads * s.head_dim; ++e)
        StoreFromFloat(probe.hot_v.data(), (static_cast<size_t>(r) * s.num_kv_heads * s.head_dim + e), r == j, s.dtype);
    for (int r = 0; r < s.n_warm; ++r) {
      for (int h = 0; h < s.num_kv_heads; ++h) {
        const size_t sl = static_cast<size_t>(r) * s.num_kv_heads + h;
        for (int grp = 0; grp < pr.lay.Groups(); ++grp) {
          probe.wvs[sl * pr.lay.Groups() + grp] = 0;  // scale 0: the value is the zero
          probe.wvz[sl * pr.lay.Groups() + grp] = FloatToHalfBits(s.n_hot + r == j ? 1.0f : 0.0f);
        }
      }
    }
    const testing::NaiveResult res = NaiveAkvAttention(probe, 0);
    for (int h = 0; h < s.num_heads; ++h) a[j] += res.out[(static_cast<size_t>(i) * s.num_heads + h) * s.head_dim];
    a[j] /= s.num_heads;
  }
  return a;
}

TEST(AkvScoreRef, ImportanceAddsLastQueryShareToTheDecayedScore) {
  AkvShape s;
  s.n_hot = 12;
  s.n_warm = 9;
  s.rows = 3;
  s.num_heads = 6;
  AkvProblem pr = MakeAkvProblem(s, 5);
  const testing::NaiveResult att = NaiveAkvAttention(pr, 0);
  std::vector<float> lse(att.lse.begin(), att.lse.end());
  const std::vector<float> s0(pr.hot_score), w0(pr.warm_score);
  const std::vector<double> a = NaiveShare(pr, s.rows - 1);
  ASSERT_TRUE(AkvScoreUpdateRef(ScoreParams(pr, lse, AkvScoring::kImportance)));
  double total = 0.0;
  for (int j = 0; j < s.n_hot; ++j) EXPECT_NEAR(pr.hot_score[j], 0.3 * s0[j] + a[j], 1e-5) << "hot " << j;
  for (int j = 0; j < s.n_warm; ++j) {
    EXPECT_NEAR(pr.warm_score[j], 0.3 * w0[j] + a[s.n_hot + j], 1e-5) << "warm " << j;
    EXPECT_NEAR(pr.warm_a[j], a[s.n_hot + j], 1e-6) << "warm a " << j;
  }
  for (double x : a) total += x;
  EXPECT_NEAR(total, 1.0, 1e-9) << "shares of the last row sum to one";
}

TEST(AkvScoreRef, HybridNormalisesAttentionAndAddsPositionRank) {
  AkvShape s;
  s.n_hot = 10;
  s.n_warm = 7;
  s.rows = 4;
  AkvProblem pr = MakeAkvProblem(s, 6);
  const testing::NaiveResult att = NaiveAkvAttention(pr, 0);
  std::vector<float> lse(att.lse.begin(), att.lse.end());
  const int n = s.n_hot + s.n_warm;
  std::vector<double> u(n);
  for (int j = 0; j < n; ++j) u[j] = 0.3 * (j < s.n_hot ? pr.hot_score[j] : pr.warm_score[j - s.n_hot]);
  for (int i = 0; i < s.rows; ++i) {
    const std::vector<double> a = NaiveShare(pr, i);
    for (int j = 0; j < n; ++j) u[j] += a[j];
  }
  const double umax = *std::max_element(u.begin(), u.end());
  std::vector<int32_t> pos;
  for (int j = 0; j < n; ++j) pos.push_back(j < s.n_hot ? pr.hot_pos[j] : pr.warm_pos[j - s.n_hot]);
  AkvScoreParams p = ScoreParams(pr, lse, AkvScoring::kHybrid);
  p.attention_weight = 0.7f;
  p.recency_weight = 0.3f;
  ASSERT_TRUE(AkvScoreUpdateRef(p));
  for (int j = 0; j < n; ++j) {
    int rank = 0;
    for (int k = 0; k < n; ++k) rank += pos[k] < pos[j];
    const double want = 0.7 * u[j] / umax + 0.3 * rank / (n - 1.0);
    const float got = j < s.n_hot ? pr.hot_score[j] : pr.warm_score[j - s.n_hot];
    EXPECT_NEAR(got, want, 1e-5) << "row " << j;
  }
}

// q_keep / lse_keep (the cold scan's query): the last of M rows, packed.
TEST(AkvScoreRef, KeepsTheLastQueryRowAndItsLse) {
  AkvShape s;
  s.rows = 3;
  s.num_heads = 6;
  AkvProblem pr = MakeAkvProblem(s, 8);
  std::vector<float> lse(static_cast<size_t>(s.rows) * s.num_heads);
  for (size_t i = 0; i < lse.size(); ++i) lse[i] = 0.5f + static_cast<float>(i);
  std::vector<float> q_keep(static_cast<size_t>(s.num_heads) * s.head_dim, NAN), lse_keep(s.num_heads, NAN);
  AkvScoreParams p = ScoreParams(pr, lse, AkvScoring::kImportance);
  p.q_keep = q_keep.data(), p.lse_keep = lse_keep.data();
  ASSERT_TRUE(AkvScoreUpdateRef(p));
  const auto* q = reinterpret_cast<const float*>(pr.q.data());  // fp32 problem, [M, Hq, D]
  for (int h = 0; h < s.num_heads; ++h) {
    EXPECT_EQ(lse_keep[h], lse[static_cast<size_t>(s.rows - 1) * s.num_heads + h]);
    for (int d = 0; d < s.head_dim; ++d) {
      EXPECT_EQ(q_keep[static_cast<size_t>(h) * s.head_dim + d],
                q[(static_cast<size_t>(s.rows - 1) * s.num_heads + h) * s.head_dim + d]);
    }
  }
  p.lse_keep = nullptr;  // both or neither
  EXPECT_FALSE(AkvScoreUpdateRef(p));
}

TEST(AkvScoreRef, FifoLeavesScoresUntouched) {
  AkvShape s;
  AkvProblem pr = MakeAkvProblem(s, 2);
  const std::vector<float> s0(pr.hot_score);
  std::vector<float> lse(s.num_heads, 0.0f);
  ASSERT_TRUE(AkvScoreUpdateRef(ScoreParams(pr, lse, AkvScoring::kFifo)));
  for (int j = 0; j < s.n_hot; ++j) EXPECT_EQ(pr.hot_score[j], s0[j]);
}

}  // namespace
}  // namespace kvstream
