// A request's page size P need not be the pool's block size Pb (the engine's
// pool has 16-token blocks; entmax_kv.md §5 allows P in 8, 16, 32, 64): the
// twins of K1, K2, K3 and K7 (and the Gaussian stats) give bit-identical
// results whether the same tokens sit in blocks of P or of 16 tokens, so
// selection and attention depend on P alone. Also: a bad block id inside a
// page that spans blocks is refused before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/kernels/entmax_kv/entmax_problem.h"

namespace kvstream {
namespace {

using namespace testing;  // NOLINT: test-local helpers

struct Pipeline {
  std::vector<float> u, out, mass, mu, sigma;
  std::vector<int> lists;  // every row's list, then its count and T_sel
};

// K1 over every page, K2 + K3 (top-k, budget 5 pages, 1 sink), K7 softmax,
// and the Gaussian stats (K4) on the kMeanStd pair; `alpha` 1 or 1.5 for K7.
Pipeline RunPipeline(EntmaxProblem* pr, int hs, float alpha) {
  const EntmaxShape& sh = pr->shape;
  const int B = sh.batch, H = sh.heads, D = sh.head_dim, MB = pr->max_blocks;
  Pipeline r;
  EXPECT_TRUE(FillStats(pr, EntmaxStatKind::kMinMax));
  EXPECT_TRUE(FillStats(pr, EntmaxStatKind::kMeanStd));
  r.u.assign(static_cast<size_t>(B) * hs * MB, NAN);
  EntmaxCriticalityParams c;
  c.kv = pr->Kv(), c.query = pr->Query(), c.stats = pr->Stats(), c.u = r.u.data(), c.select_heads = hs;
  EXPECT_TRUE(EntmaxCriticalityRef(c)) << EntmaxCriticalityValidate(c);
  SelectionBuffers sel(B, hs, MB);
  EntmaxTopkPackParams t;
  t.u = r.u.data(), t.seq_lens = pr->seq_lens.data(), t.batch = B, t.page_size = sh.page_size;
  t.max_blocks_per_seq = MB, t.sel = sel.View(), t.budget_pages = 5, t.sink_pages = 1;
  EXPECT_TRUE(EntmaxTopkPackRef(t)) << EntmaxTopkPackValidate(t);
  for (int b = 0; b < B; ++b) {
    for (int l = 0; l < hs; ++l) {
      const std::vector<int> list = sel.List(b, l);
      r.lists.insert(r.lists.end(), list.begin(), list.end());
      r.lists.push_back(sel.count[static_cast<size_t>(b) * hs + l]);
      r.lists.push_back(sel.sel_len[static_cast<size_t>(b) * hs + l]);
    }
  }
  std::vector<uint8_t> out(static_cast<size_t>(B) * H * D * pr->Esz(), 0xFF);
  std::vector<float> scores(static_cast<size_t>(B) * H * MB * sh.page_size, NAN), tau(B * H, NAN);
  r.mass.assign(B * H, NAN);
  EntmaxSparseDecodeParams p;
  p.kv = pr->Kv(), p.query = pr->Query(), p.sel = sel.View(), p.out = out.data(), p.scores = scores.data();
  p.max_sel_tokens = MB * sh.page_size, p.tau = tau.data(), p.mass = r.mass.data();
  p.alpha = alpha, p.scale = 1.0f / std::sqrt(static_cast<float>(D)), p.niter = 4;
  EXPECT_TRUE(EntmaxSparseDecodeRef(p)) << EntmaxSparseDecodeValidate(p);
  for (size_t i = 0; i < static_cast<size_t>(B) * H * D; ++i) r.out.push_back(LoadAsFloat(out.data(), i, sh.dtype));
  r.mu.assign(static_cast<size_t>(B) * H * MB, NAN);
  r.sigma.assign(r.mu.size(), NAN);
  std::vector<float> mu_g(B * H, NAN), sigma_g(B * H, NAN);
  EntmaxGaussStatsParams gs;
  gs.kv = pr->Kv(), gs.query = pr->Query(), gs.stats = pr->Stats(), gs.scale = p.scale;
  gs.mu = r.mu.data(), gs.sigma = r.sigma.data(), gs.mu_g = mu_g.data(), gs.sigma_g = sigma_g.data();
  EXPECT_TRUE(EntmaxGaussStatsRef(gs)) << EntmaxGaussStatsValidate(gs);
  // Rows of MB entries (MB differs with the block size): the P_hist defined ones.
  auto compact = [&](const std::vector<float>& v, int rows_per_seq) {
    std::vector<float> c;
    for (int b = 0; b < B; ++b) {
      const int hist = EntmaxPagesOf(pr->seq_lens[b], sh.page_size, MB).hist;
      for (int l = 0; l < rows_per_seq; ++l) {
        const auto row = v.begin() + (static_cast<int64_t>(b) * rows_per_seq + l) * MB;
        c.insert(c.end(), row, row + hist);
      }
    }
    return c;
  };
  r.u = compact(r.u, hs), r.mu = compact(r.mu, H), r.sigma = compact(r.sigma, H);
  return r;
}

// Same shape, seeds and tokens, blocks of `block_size` tokens: b's copy of
// every (b, g, t, d) key and value of a, and a's queries.
EntmaxProblem Relaid(const EntmaxProblem& a, int block_size) {
  EntmaxShape sh = a.shape;
  sh.block_size = block_size;
  EntmaxProblem b = MakeEntmaxProblem(sh, 99);
  b.q = a.q;
  for (int s = 0; s < sh.batch; ++s) {
    for (int g = 0; g < sh.kv_heads; ++g) {
      for (int t = 0; t < sh.seq_lens[s]; ++t) {
        for (int d = 0; d < sh.head_dim; ++d) {
          b.SetK(s, g, t, d, a.K(s, g, t, d));
          b.SetV(s, g, t, d, a.V(s, g, t, d));
        }
      }
    }
  }
  return b;
}

void ExpectSame(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << what << " at " << i;
}

TEST(EntmaxBlockSize, PagesOfAnySizeOverSixteenTokenBlocksSelectAndAttendAsOverBlocksOfThePageSize) {
  for (KvDType dtype : {KvDType::kFp32, KvDType::kBf16}) {
    for (int P : {8, 32, 64}) {
      for (bool shared : {true, false}) {
        EntmaxShape sh;
        sh.batch = 3, sh.heads = 8, sh.kv_heads = 2, sh.head_dim = 64, sh.dtype = dtype, sh.page_size = P;
        sh.seq_lens = {P * 13 + 5, 3, P * 7};
        sh.key_scale = 2.0f;
        EntmaxProblem a = MakeEntmaxProblem(sh, 700 + P);
        EntmaxProblem b = Relaid(a, 16);
        ASSERT_NE(a.TableRow(), b.TableRow());
        const int hs = shared ? sh.kv_heads : sh.heads;
        for (float alpha : {1.0f, 1.5f}) {
          const std::string what = std::string(KvDTypeName(dtype)) + " P" + std::to_string(P) +
                                   (shared ? " shared" : " per-head") + " alpha " + std::to_string(alpha);
          const Pipeline ra = RunPipeline(&a, hs, alpha), rb = RunPipeline(&b, hs, alpha);
          ExpectSame(ra.u, rb.u, what + " U");
          EXPECT_EQ(ra.lists, rb.lists) << what;
          ExpectSame(ra.out, rb.out, what + " out");
          ExpectSame(ra.mass, rb.mass, what + " mass");
          ExpectSame(ra.mu, rb.mu, what + " mu");
          ExpectSame(ra.sigma, rb.sigma, what + " sigma");
        }
      }
    }
  }
}

TEST(EntmaxBlockSize, ABadBlockInsideAPageThatSpansBlocksIsRefusedBeforeAnyWrite) {
  EntmaxShape sh;
  sh.batch = 1, sh.heads = 4, sh.kv_heads = 2, sh.head_dim = 64, sh.page_size = 64, sh.block_size = 16;
  sh.seq_lens = {64 * 3};
  EntmaxProblem pr = MakeEntmaxProblem(sh, 5);
  pr.block_table[6] = pr.num_blocks;  // page 1's third block: outside the pool
  const std::vector<float> before = pr.kmean;
  EntmaxPageStatsParams p;
  p.kv = pr.Kv(), p.stats = pr.Stats(), p.kind = EntmaxStatKind::kMeanStd, p.recent_pages = pr.max_blocks;
  EXPECT_FALSE(EntmaxPageStatsRef(p));
  EXPECT_EQ(pr.kmean, before);
}

TEST(EntmaxBlockSize, TableRowsMustHoldWholePages) {
  EntmaxShape sh;
  sh.page_size = 8, sh.block_size = 16;
  EntmaxProblem pr = MakeEntmaxProblem(sh, 6);
  EntmaxPageStatsParams p;
  p.kv = pr.Kv(), p.stats = pr.Stats(), p.recent_pages = 1;
  EXPECT_EQ(EntmaxPageStatsValidate(p), nullptr);
  p.kv.max_blocks_per_seq = 3;  // 3 pages of 8 = 1.5 blocks
  EXPECT_STREQ(EntmaxPageStatsValidate(p),
               "kv.max_blocks_per_seq * kv.page_size must be a multiple of kv.block_size (whole table rows)");
  p.kv.max_blocks_per_seq = 4;
  p.kv.block_size = 12;
  EXPECT_STREQ(EntmaxPageStatsValidate(p), "kv.block_size must be 0 (= page_size), 8, 16, 32 or 64");
}

}  // namespace
}  // namespace kvstream
