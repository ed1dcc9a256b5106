// K7 sparse_decode twin against independent fp64 oracles (entmax_kv.md §9
// tests 3, 4, 6): alpha 1 over all pages is plain softmax attention; alpha 2 /
// 1.5 match sort-based entmax and a 200-step bisection tau; the output equals
// the oracle restricted to the chosen pages; a support planted inside the
// chosen pages gives the dense answer; FIXED keeps tau_init; CORRECTED
// converges; edges: empty selection, one page, partial tail, GQA 1/4/8.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "tests/kernels/entmax_kv/entmax_decode_oracle.h"

namespace kvstream {
namespace {

using namespace testing;  // NOLINT: test-local helpers

struct DecodeRun {
  std::vector<float> out, tau, mass;
  std::vector<int32_t> support;
};

// Lists: all pages (dense) or sinks + every `stride`-th page + tail (sparse).
SelectionBuffers MakeLists(const EntmaxProblem& pr, int hs, int stride) {
  SelectionBuffers sel(pr.shape.batch, hs, pr.max_blocks);
  const int P = pr.shape.page_size;
  for (int b = 0; b < pr.shape.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(pr.seq_lens[b], P, pr.max_blocks);
    for (int l = 0; l < hs; ++l) {
      const size_t row = static_cast<size_t>(b) * hs + l;
      int c = 0, tokens = 0;
      for (int pg = 0; pg < s.pages; ++pg) {
        if (pg == s.pages - 1 || pg % stride == (l % stride)) {
          sel.pages[row * pr.max_blocks + c++] = pg;
          tokens += std::min(P, s.tokens - pg * P);
        }
      }
      sel.count[row] = c;
      sel.sel_len[row] = tokens;
    }
  }
  return sel;
}

DecodeRun RunTwin(EntmaxProblem* pr, SelectionBuffers* sel, float alpha, EntmaxTauMode mode, int niter,
                  const std::vector<float>* tau_init = nullptr) {
  const int B = pr->shape.batch, H = pr->shape.heads, D = pr->shape.head_dim;
  DecodeRun r;
  std::vector<uint8_t> out(static_cast<size_t>(B) * H * D * pr->Esz(), 0xFF);  // NaN-poisoned
  std::vector<float> scores(static_cast<size_t>(B) * H * pr->max_blocks * pr->shape.page_size, NAN);
  r.tau.assign(B * H, NAN);
  r.mass.assign(B * H, NAN);
  r.support.assign(B * H, -1);
  EntmaxSparseDecodeParams p;
  p.kv = pr->Kv();
  p.query = pr->Query();
  p.sel = sel->View();
  p.out = out.data();
  p.scores = scores.data();
  p.max_sel_tokens = pr->max_blocks * pr->shape.page_size;
  p.tau = r.tau.data();
  p.mass = r.mass.data();
  p.support = r.support.data();
  p.tau_init = tau_init ? tau_init->data() : nullptr;
  p.alpha = alpha;
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));
  p.tau_mode = mode;
  p.niter = niter;
  p.correction_iters = 8;
  EXPECT_TRUE(EntmaxSparseDecodeRef(p));
  for (size_t i = 0; i < static_cast<size_t>(B) * H * D; ++i) r.out.push_back(LoadAsFloat(out.data(), i, pr->shape.dtype));
  return r;
}

std::vector<float> OutRow(const DecodeRun& r, int bh, int D) {
  return std::vector<float>(r.out.begin() + static_cast<size_t>(bh) * D, r.out.begin() + static_cast<size_t>(bh + 1) * D);
}

double OracleTau(const std::vector<double>& z, float alpha) {
  if (alpha == 1.0f) return SoftmaxTau(z);
  return alpha == 2.0f ? SparsemaxTauBySort(z) : Entmax15TauBySort(z);
}

// Every head of every sequence vs the oracle restricted to its list.
void ExpectMatchesOracle(EntmaxProblem* pr, int hs, int stride, float alpha, int niter, double out_tol,
                         double tau_tol) {
  SelectionBuffers sel = MakeLists(*pr, hs, stride);
  const DecodeRun r = RunTwin(pr, &sel, alpha, EntmaxTauMode::kExact, niter);
  const int H = pr->shape.heads, D = pr->shape.head_dim, P = pr->shape.page_size;
  for (int b = 0; b < pr->shape.batch; ++b) {
    for (int h = 0; h < H; ++h) {
      const int bh = b * H + h;
      const std::vector<int> tokens = TokensOf(sel.List(b, h / (H / hs)), pr->seq_lens[b], P);
      if (tokens.empty()) {
        for (float x : OutRow(r, bh, D)) EXPECT_EQ(x, 0.0f);
        EXPECT_EQ(r.mass[bh], 0.0f);
        EXPECT_EQ(r.support[bh], 0);
        continue;
      }
      const std::vector<double> z = OracleScores(*pr, b, h, tokens, alpha == 1.0f ? 1.0 : alpha - 1.0);
      const double tau = OracleTau(z, alpha);
      EXPECT_NEAR(r.tau[bh], tau, tau_tol * std::max(1.0, std::fabs(tau))) << "b " << b << " h " << h;
      if (alpha != 1.0f) {
        EXPECT_NEAR(tau, BisectionTau(z, alpha), 1e-9 * std::max(1.0, std::fabs(tau)));  // the two oracles agree
        int support = 0;
        for (double x : z) support += x > tau;
        EXPECT_NEAR(r.support[bh], support, 1) << "b " << b << " h " << h;
      }
      EXPECT_NEAR(r.mass[bh], 1.0, 1e-3) << "b " << b << " h " << h;
      EXPECT_LT(RelL2(OracleOut(*pr, b, h, tokens, z, tau, alpha), OutRow(r, bh, D)), out_tol) << "b " << b << " h " << h;
    }
  }
}

EntmaxShape Shape(int kv_heads, KvDType dtype, std::vector<int> lens, float key_scale = 1.0f) {
  EntmaxShape sh;
  sh.batch = static_cast<int>(lens.size());
  sh.heads = 8;
  sh.kv_heads = kv_heads;
  sh.dtype = dtype;
  sh.seq_lens = std::move(lens);
  sh.key_scale = key_scale;
  return sh;
}

TEST(SparseDecodeTwin, SoftmaxOverAllPagesEqualsPlainAttention) {
  for (int kv_heads : {8, 2, 1}) {  // G = 1, 4, 8
    EntmaxProblem pr = MakeEntmaxProblem(Shape(kv_heads, KvDType::kFp32, {16 * 9 + 5, 16, 1, 16 * 3}), 40 + kv_heads);
    ExpectMatchesOracle(&pr, kv_heads, 1, 1.0f, 3, 1e-5, 1e-5);
  }
}

TEST(SparseDecodeTwin, SoftmaxEqualsOracleRestrictedToChosenPages) {
  EntmaxProblem pr = MakeEntmaxProblem(Shape(2, KvDType::kFp32, {16 * 20 + 7, 16 * 11}), 50);
  ExpectMatchesOracle(&pr, 2, 3, 1.0f, 3, 1e-5, 1e-5);   // SHARED_KV lists
  ExpectMatchesOracle(&pr, 8, 3, 1.0f, 3, 1e-5, 1e-5);   // PER_QUERY_HEAD lists
}

// Keys scaled up so the entmax support is a real subset (sparse) of the tokens.
TEST(SparseDecodeTwin, SparsemaxMatchesSortOracleAtDefaultNiter) {
  for (int kv_heads : {8, 2, 1}) {
    EntmaxProblem pr = MakeEntmaxProblem(Shape(kv_heads, KvDType::kFp32, {16 * 12 + 3, 9}, 6.0f), 60 + kv_heads);
    ExpectMatchesOracle(&pr, kv_heads, 2, 2.0f, 4, 1e-3, 1e-3);
  }
}

TEST(SparseDecodeTwin, Entmax15MatchesSortOracleAtDefaultNiter) {
  for (int kv_heads : {8, 2, 1}) {
    EntmaxProblem pr = MakeEntmaxProblem(Shape(kv_heads, KvDType::kFp32, {16 * 12 + 3, 16}, 6.0f), 70 + kv_heads);
    ExpectMatchesOracle(&pr, kv_heads, 2, 1.5f, 3, 1e-3, 1e-3);
  }
}

TEST(SparseDecodeTwin, ExactTauConvergesTightlyWithMaxNiter) {
  for (float alpha : {1.5f, 2.0f}) {
    EntmaxProblem pr = MakeEntmaxProblem(Shape(2, KvDType::kFp32, {16 * 30 + 1}, 3.0f), 80);
    ExpectMatchesOracle(&pr, 2, 1, alpha, kEntmaxMaxNiter, 1e-5, 1e-6);
  }
}

TEST(SparseDecodeTwin, Bf16PoolWithinBf16Tolerance) {
  EntmaxProblem pr = MakeEntmaxProblem(Shape(2, KvDType::kBf16, {16 * 10 + 2}, 4.0f), 90);
  ExpectMatchesOracle(&pr, 2, 2, 1.0f, 3, 8e-3, 1e-4);
  ExpectMatchesOracle(&pr, 2, 2, 2.0f, 8, 8e-3, 1e-4);
}

TEST(SparseDecodeTwin, PlantedSupportInsideChosenPagesEqualsDense) {
  // Tokens of even pages get keys along q (high scores); odd pages get keys
  // against it: the alpha=2 support lies inside the even pages, so attending
  // only them gives the dense answer.
  EntmaxProblem pr = MakeEntmaxProblem(Shape(1, KvDType::kFp32, {16 * 8 + 4}), 100);
  pr.shape.heads = 1;
  pr.q.resize(static_cast<size_t>(pr.shape.head_dim) * 4);
  for (int t = 0; t < 16 * 8 + 4; ++t)
    for (int d = 0; d < pr.shape.head_dim; ++d)
      pr.SetK(0, 0, t, d, ((t / 16) % 2 == 0 || t >= 16 * 8 ? 3.0f : -3.0f) * pr.Q(0, 0, d) + 0.05f * ((t * 7 + d) % 5));
  SelectionBuffers dense = MakeLists(pr, 1, 1), sparse = MakeLists(pr, 1, 2);
  const DecodeRun rd = RunTwin(&pr, &dense, 2.0f, EntmaxTauMode::kExact, 8);
  const DecodeRun rs = RunTwin(&pr, &sparse, 2.0f, EntmaxTauMode::kExact, 8);
  EXPECT_LT(rs.support[0], 16 * 5 + 4);
  EXPECT_NEAR(rs.tau[0], rd.tau[0], 1e-6);
  for (int d = 0; d < pr.shape.head_dim; ++d) EXPECT_NEAR(rs.out[d], rd.out[d], 1e-6);
}

TEST(SparseDecodeTwin, FixedKeepsTauInitAndCorrectedConverges) {
  EntmaxProblem pr = MakeEntmaxProblem(Shape(2, KvDType::kFp32, {16 * 6 + 9}, 4.0f), 110);
  SelectionBuffers sel = MakeLists(pr, 2, 1);
  const DecodeRun exact = RunTwin(&pr, &sel, 1.5f, EntmaxTauMode::kExact, kEntmaxMaxNiter);
  std::vector<float> init(exact.tau);
  for (size_t i = 0; i < init.size(); ++i) init[i] += (i % 2 ? 0.3f : -0.2f);
  const DecodeRun fixed = RunTwin(&pr, &sel, 1.5f, EntmaxTauMode::kFixed, 1, &init);
  const DecodeRun corr = RunTwin(&pr, &sel, 1.5f, EntmaxTauMode::kCorrected, 1, &init);
  for (size_t i = 0; i < init.size(); ++i) {
    EXPECT_EQ(fixed.tau[i], init[i]);
    EXPECT_NEAR(corr.tau[i], exact.tau[i], 1e-5) << i;
    EXPECT_NEAR(corr.mass[i], 1.0, 1e-5) << i;
  }
}

TEST(SparseDecodeTwin, UnnormalisedOutputScalesByMass) {
  EntmaxProblem pr = MakeEntmaxProblem(Shape(2, KvDType::kFp32, {16 * 4 + 1}, 2.0f), 120);
  SelectionBuffers sel = MakeLists(pr, 2, 1);
  std::vector<float> init(8, 0.0f);  // a tau far from the root: mass != 1
  for (int h = 0; h < 8; ++h) init[h] = -0.5f;
  const DecodeRun r = RunTwin(&pr, &sel, 2.0f, EntmaxTauMode::kFixed, 1, &init);
  EXPECT_GT(std::fabs(r.mass[0] - 1.0f), 0.01f);
  for (float x : r.out) EXPECT_TRUE(std::isfinite(x));
}

TEST(SparseDecodeTwin, ValidateRejectsUnsupportedAlpha) {
  EntmaxProblem pr = MakeEntmaxProblem(Shape(2, KvDType::kFp32, {20}), 1);
  SelectionBuffers sel = MakeLists(pr, 2, 1);
  EntmaxSparseDecodeParams p;
  p.kv = pr.Kv();
  p.query = pr.Query();
  p.sel = sel.View();
  p.alpha = 1.25f;
  EXPECT_STREQ(EntmaxSparseDecodeValidate(p), "max_sel_tokens must be >= 1");
  p.max_sel_tokens = 64;
  EXPECT_STREQ(EntmaxSparseDecodeValidate(p), "alpha must be 1, 1.5 or 2");
}

TEST(SparseDecodePlan, SplitsFillTheMachineAndRespectMinTokens) {
  EXPECT_EQ(PlanEntmaxSparseDecodeSplits(1, 32, 2064, 132), 8);   // 264 / 32 = 8, 2064 / 128 = 16
  EXPECT_EQ(PlanEntmaxSparseDecodeSplits(64, 32, 2064, 132), 1);
  EXPECT_EQ(PlanEntmaxSparseDecodeSplits(1, 1, 100, 132), 1);
  EXPECT_EQ(EntmaxSparseDecodeWorkspaceBytes(2, 8, 4, 128), 2u * 8 * 4 * 128 * 4);
}

}  // namespace
}  // namespace kvstream
