// EntmaxKV K1, K2, K3, K7 on the GPU vs their CPU twins on fresh random inputs
// with NaN-poisoned outputs (entmax_kv.md §9 tests 1-4, 6), with pages equal to
// the pool's blocks and pages of 8 / 32 / 64 tokens over 16-token blocks (the
// engine's pool). Skips with a reason where no CUDA device is present.
//
// Bounds: K1 min/max bit-exact (copies of key values), mean/std bit-exact
// (same _rn order) but checked to 1e-6 relative; K2 U within 1e-5*(1 + |U|)
// (fp32 sums in another order); K3 lists identical on the SAME U (README
// decision: selection kernels compared on identical scores); K7 out
// ||gpu - twin|| / ||twin||: fp32 1e-4, bf16 8e-3 (output rounding of both);
// tau within 1e-3 * max(1, |tau|), |mass_gpu - mass_twin| < 1e-3.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "tests/kernels/entmax_kv/entmax_cuda_util.h"

namespace kvstream {
namespace {

using namespace testing;  // NOLINT: test-local helpers

constexpr uint8_t kPoison = 0xFF;  // all-ones bytes: NaN in fp32 and bf16

TEST(EntmaxCuda, PageStatsMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (EntmaxStatKind kind : {EntmaxStatKind::kMinMax, EntmaxStatKind::kMeanStd})
      for (int P : {16, 8, 32, 64}) {  // P != 16: pages over the engine's 16-token blocks
        EntmaxShape sh;
        sh.batch = 3, sh.heads = 4, sh.kv_heads = 2, sh.head_dim = D, sh.dtype = dtype;
        sh.page_size = P, sh.block_size = P == 16 ? 0 : 16;
        sh.seq_lens = {16 * 7 + 5, 1, 16 * 3};
        EntmaxProblem pr = MakeEntmaxProblem(sh, 200 + D + P);
        DevArena a;
        DevProblem d = Upload(pr, pr.Kv(), &a);
        std::fill(pr.kmin.begin(), pr.kmin.end(), kPoison);
        std::fill(pr.kmax.begin(), pr.kmax.end(), kPoison);
        std::fill(pr.kmean.begin(), pr.kmean.end(), NAN);
        std::fill(pr.kstd.begin(), pr.kstd.end(), NAN);
        d.stats = Upload(pr, pr.Kv(), &a).stats;  // poisoned device stats
        for (int recent : {pr.max_blocks, 1}) {
          EntmaxPageStatsParams p;
          p.kv = pr.Kv();
          p.stats = pr.Stats();
          p.kind = kind;
          p.recent_pages = recent;
          ASSERT_TRUE(EntmaxPageStatsRef(p));
          p.kv = d.kv;
          p.stats = d.stats;
          ASSERT_CUDA(LaunchEntmaxPageStats(p, nullptr));
        }
        ASSERT_CUDA(cudaDeviceSynchronize());
        if (kind == EntmaxStatKind::kMinMax) {
          EXPECT_EQ(Down(static_cast<uint8_t*>(d.stats.kmin), pr.kmin.size()), pr.kmin);
          EXPECT_EQ(Down(static_cast<uint8_t*>(d.stats.kmax), pr.kmax.size()), pr.kmax);
        } else {
          const std::vector<float> mean = Down(d.stats.kmean, pr.kmean.size()), sd = Down(d.stats.kstd, pr.kstd.size());
          for (size_t i = 0; i < mean.size(); ++i) {
            if (std::isnan(pr.kmean[i])) continue;  // page never touched: both poisoned
            ASSERT_NEAR(mean[i], pr.kmean[i], 1e-6 * (1 + std::fabs(pr.kmean[i]))) << i;
            ASSERT_NEAR(sd[i], pr.kstd[i], 1e-6 * (1 + pr.kstd[i])) << i;
          }
        }
      }
    }
  }
}

TEST(EntmaxCuda, CriticalityAndTopkPackMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (int kv_heads : {8, 2, 1}) {  // G = 1, 4, 8
        for (bool shared : {true, false})
        for (int P : {16, 8, 64}) {  // P != 16: pages over 16-token blocks
          if (P != 16 && kv_heads != 2) continue;
          EntmaxShape sh;
          sh.batch = 3, sh.heads = 8, sh.kv_heads = kv_heads, sh.head_dim = D, sh.dtype = dtype;
          sh.page_size = P, sh.block_size = P == 16 ? 0 : 16;
          sh.seq_lens = {16 * 97 + 3, 16 * 54, 9};
          EntmaxProblem pr = MakeEntmaxProblem(sh, 300 + D + kv_heads + P);
          ASSERT_TRUE(FillStats(&pr, EntmaxStatKind::kMinMax));
          const int hs = shared ? kv_heads : 8;
          DevArena a;
          DevProblem d = Upload(pr, pr.Kv(), &a);
          const size_t un = static_cast<size_t>(sh.batch) * hs * pr.max_blocks;
          std::vector<float> u(un, NAN);
          float* du = a.Up(u);
          EntmaxCriticalityParams c;
          c.kv = pr.Kv(), c.query = pr.Query(), c.stats = pr.Stats(), c.u = u.data(), c.select_heads = hs;
          ASSERT_TRUE(EntmaxCriticalityRef(c));
          c.kv = d.kv, c.query = d.query, c.stats = d.stats, c.u = du;
          ASSERT_CUDA(LaunchEntmaxCriticality(c, nullptr));
          const std::vector<float> gu = Down(du, un);
          for (size_t i = 0; i < un; ++i) {
            if (std::isnan(u[i])) { EXPECT_TRUE(std::isnan(gu[i])) << i; continue; }
            ASSERT_NEAR(gu[i], u[i], 1e-5 * (1 + std::fabs(u[i]))) << i;
          }
          // K3 on the twin's U on both sides.
          // chunk_pages: planner, one CTA per row, two stages with 32 / 64-page chunks.
          for (int budget : {1, 8, 64, 200}) for (int chunk : {-1, 0, 32, 64}) {
            SelectionBuffers hsel(sh.batch, hs, pr.max_blocks), gsel(sh.batch, hs, pr.max_blocks);
            EntmaxTopkPackParams t;
            t.u = u.data(), t.seq_lens = pr.seq_lens.data(), t.batch = sh.batch, t.page_size = P;
            t.max_blocks_per_seq = pr.max_blocks, t.sel = hsel.View(), t.budget_pages = budget, t.sink_pages = 1;
            ASSERT_TRUE(EntmaxTopkPackRef(t));
            EntmaxTopkPackParams g = t;
            g.u = a.Up(u), g.seq_lens = d.kv.seq_lens, g.chunk_pages = chunk;
            g.sel.pages = a.Up(gsel.pages), g.sel.page_count = a.Up(gsel.count), g.sel.sel_len = a.Up(gsel.sel_len);
            ASSERT_CUDA(LaunchEntmaxTopkPack(g, nullptr));
            gsel.count = Down(g.sel.page_count, gsel.count.size());
            gsel.sel_len = Down(g.sel.sel_len, gsel.sel_len.size());
            gsel.pages = Down(g.sel.pages, gsel.pages.size());
            EXPECT_EQ(gsel.count, hsel.count);
            EXPECT_EQ(gsel.sel_len, hsel.sel_len);
            for (int b = 0; b < sh.batch; ++b)
              for (int l = 0; l < hs; ++l)
                EXPECT_EQ(gsel.List(b, l), hsel.List(b, l)) << "budget " << budget << " chunk " << chunk;
          }
        }
      }
    }
  }
}

// K3 alone on long rows with many exact ties (U quantised to a few values, so
// the threshold key is shared by many pages and the lower-page rule decides):
// rows of >= 4096 pages take the two-stage kernels (planner chunk width, and
// forced widths with many chunks / whole-chunk keeps), chunk_pages 0 the
// cluster (rows past 16384 pages, few rows) or one-CTA kernel; all must give
// the twin's lists exactly.
TEST(EntmaxCuda, TopkPackLongRowsWithTiesMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  struct Case {
    int batch, hs, P;
    std::vector<int32_t> lens;
  };
  const Case cases[] = {{2, 2, 16, {16 * 20000 + 5, 16 * 17000}},   // cluster: MB 20001
                        {1, 8, 8, {8 * 40000 + 1}},                  // cluster: 8 rows
                        {3, 8, 16, {16 * 9000 + 3, 16 * 300, 16}}};  // one CTA per row
  std::mt19937 rng(77);
  for (const Case& cs : cases) {
    int mb = 1;
    for (int32_t t : cs.lens) mb = std::max(mb, (t + cs.P - 1) / cs.P + 1);
    // 9 distinct values: ~1000 keys per value, more than the one-CTA
    // kernel's threshold-bin member list (RangedSelect's radix fallback); 41:
    // ~220 ties per value (ranked members); 401: a few per bin; 0: continuous
    // scores (the usual case); -1: continuous with NaN, +-inf, +-0 and
    // denormals mixed in (non-finite range: key-space bins).
    for (int levels : {8, 40, 400, 0, -1})
    for (int budget : {1, 128, 2000}) for (int chunk : {-1, 0, 256, 4096}) {
      std::vector<float> u(static_cast<size_t>(cs.batch) * cs.hs * mb, NAN);
      std::uniform_int_distribution<int> level(0, std::max(levels, 1));
      std::normal_distribution<float> smooth(0.0f, 4.0f);
      const float special[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-40f, -1e-40f, 3e38f};
      std::uniform_int_distribution<int> pick(0, 63);
      for (float& x : u) {
        x = levels > 0 ? 0.25f * level(rng) - 3.0f * levels / 40 : smooth(rng);
        if (levels < 0 && pick(rng) < 8) x = special[pick(rng) % 8];
      }
      SelectionBuffers hsel(cs.batch, cs.hs, mb), gsel(cs.batch, cs.hs, mb);
      EntmaxTopkPackParams t;
      t.u = u.data(), t.seq_lens = cs.lens.data(), t.batch = cs.batch, t.page_size = cs.P;
      t.max_blocks_per_seq = mb, t.sel = hsel.View(), t.budget_pages = budget, t.sink_pages = 3;
      ASSERT_TRUE(EntmaxTopkPackRef(t));
      DevArena a;
      EntmaxTopkPackParams g = t;
      g.u = a.Up(u), g.seq_lens = a.Up(cs.lens), g.chunk_pages = chunk;
      g.sel.pages = a.Up(gsel.pages), g.sel.page_count = a.Up(gsel.count), g.sel.sel_len = a.Up(gsel.sel_len);
      ASSERT_CUDA(LaunchEntmaxTopkPack(g, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      gsel.count = Down(g.sel.page_count, gsel.count.size());
      gsel.sel_len = Down(g.sel.sel_len, gsel.sel_len.size());
      gsel.pages = Down(g.sel.pages, gsel.pages.size());
      EXPECT_EQ(gsel.count, hsel.count) << "MB " << mb << " levels " << levels << " budget " << budget << " chunk " << chunk;
      EXPECT_EQ(gsel.sel_len, hsel.sel_len) << "MB " << mb << " levels " << levels << " budget " << budget;
      for (int b = 0; b < cs.batch; ++b)
        for (int l = 0; l < cs.hs; ++l)
          EXPECT_EQ(gsel.List(b, l), hsel.List(b, l))
              << "MB " << mb << " levels " << levels << " budget " << budget << " chunk " << chunk << " b " << b;
    }
  }
}

double RelErr(const std::vector<float>& want, const std::vector<float>& got) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

TEST(EntmaxCuda, SparseDecodeMatchesTwinAllAlphasAndSplits) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (int kv_heads : {8, 2, 1}) {
        for (float alpha : {1.0f, 1.5f, 2.0f}) {
          for (int splits : {1, 7})
          for (int P : {16, 8, 64}) {  // P != 16: pages over 16-token blocks
            if (P != 16 && (kv_heads != 2 || splits != 7)) continue;
            EntmaxShape sh;
            sh.batch = 3, sh.heads = 8, sh.kv_heads = kv_heads, sh.head_dim = D, sh.dtype = dtype;
            sh.page_size = P, sh.block_size = P == 16 ? 0 : 16;
            sh.seq_lens = {16 * 97 + 3, 16 * 54, 1};
            sh.key_scale = alpha == 1.0f ? 1.0f : 4.0f;
            EntmaxProblem pr = MakeEntmaxProblem(sh, 400 + D + kv_heads + P);
            ASSERT_TRUE(FillStats(&pr, EntmaxStatKind::kMinMax));
            // Lists from the twin's K2/K3 (budget 24 pages, one sink).
            const int hs = kv_heads;
            std::vector<float> u(static_cast<size_t>(sh.batch) * hs * pr.max_blocks, 0.0f);
            EntmaxCriticalityParams c;
            c.kv = pr.Kv(), c.query = pr.Query(), c.stats = pr.Stats(), c.u = u.data(), c.select_heads = hs;
            ASSERT_TRUE(EntmaxCriticalityRef(c));
            SelectionBuffers sel(sh.batch, hs, pr.max_blocks);
            EntmaxTopkPackParams t;
            t.u = u.data(), t.seq_lens = pr.seq_lens.data(), t.batch = sh.batch, t.page_size = P;
            t.max_blocks_per_seq = pr.max_blocks, t.sel = sel.View(), t.budget_pages = 24 * 16 / P, t.sink_pages = 1;
            ASSERT_TRUE(EntmaxTopkPackRef(t));
            const int B = sh.batch, H = sh.heads, MT = pr.max_blocks * P;
            std::vector<uint8_t> out(static_cast<size_t>(B) * H * D * pr.Esz(), kPoison);
            std::vector<float> scores(static_cast<size_t>(B) * H * MT, NAN), tau(B * H, NAN), mass(B * H, NAN);
            std::vector<int32_t> support(B * H, -1);
            EntmaxSparseDecodeParams p;
            p.kv = pr.Kv(), p.query = pr.Query(), p.sel = sel.View(), p.out = out.data();
            p.scores = scores.data(), p.max_sel_tokens = MT, p.tau = tau.data(), p.mass = mass.data();
            p.support = support.data(), p.alpha = alpha, p.scale = 1.0f / std::sqrt(float(D));
            p.niter = alpha == 2.0f ? 4 : 3;
            ASSERT_TRUE(EntmaxSparseDecodeRef(p));
            DevArena a;
            DevProblem d = Upload(pr, pr.Kv(), &a);
            EntmaxSparseDecodeParams g = p;
            g.kv = d.kv, g.query = d.query;
            g.sel.pages = a.Up(sel.pages), g.sel.page_count = a.Up(sel.count), g.sel.sel_len = a.Up(sel.sel_len);
            std::vector<uint8_t> gout(out.size(), kPoison);
            std::vector<float> nanv(B * H, NAN);
            g.out = a.Up(gout);
            g.scores = a.Up(std::vector<float>(scores.size(), NAN));
            g.tau = a.Up(nanv), g.mass = a.Up(nanv), g.support = a.Up(std::vector<int32_t>(B * H, -1));
            g.num_splits = splits;
            g.partial_out = static_cast<float*>(a.Alloc(EntmaxSparseDecodeWorkspaceBytes(B, H, splits, D)));
            g.partial_lse = static_cast<float*>(a.Alloc(EntmaxSparseDecodeLseBytes(B, H, splits)));
            ASSERT_CUDA(LaunchEntmaxSparseDecode(g, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            gout = Down(static_cast<uint8_t*>(g.out), gout.size());
            const std::vector<float> gtau = Down(g.tau, tau.size()), gmass = Down(g.mass, mass.size());
            std::vector<float> want, got;
            for (size_t i = 0; i < static_cast<size_t>(B) * H * D; ++i) {
              want.push_back(LoadAsFloat(out.data(), i, dtype));
              got.push_back(LoadAsFloat(gout.data(), i, dtype));
              ASSERT_FALSE(std::isnan(got.back())) << "unwritten output " << i;
            }
            const double bound = dtype == KvDType::kFp32 ? 1e-4 : 8e-3;
            EXPECT_LT(RelErr(want, got), bound) << KvDTypeName(dtype) << " D" << D << " G" << 8 / kv_heads
                                                << " alpha " << alpha << " S" << splits;
            for (int i = 0; i < B * H; ++i) {
              EXPECT_NEAR(gtau[i], tau[i], 1e-3 * std::max(1.0f, std::fabs(tau[i]))) << i;
              EXPECT_NEAR(gmass[i], mass[i], 1e-3) << i;
            }
          }
        }
      }
    }
  }
}

// The alpha-1 streaming path (entmax_softmax_decode.cu) against the softmax
// twin: SHARED_KV and PER_QUERY_HEAD lists (1, 3 -> NH 4, 4 and 8 heads per
// list), page sizes 8/16/64, budgets that select a few pages or fall back to
// every page (a long list: several table segments), an empty sequence, split
// counts from 1 to past the stage count, the planner's split count, and no
// score scratch. Bound ||gpu - twin|| / ||twin||: fp32 1e-4, bf16 2e-3.
TEST(EntmaxCuda, SoftmaxFastPathMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  struct Case {
    int heads, kv_heads, P;
    bool shared;
    int budget;
    int block = 0;  // Pb (0 = P): 16 puts pages of 8 / 32 / 64 on the engine's blocks
  };
  const Case cases[] = {{8, 2, 16, true, 24},     {8, 1, 16, true, 40},       {8, 8, 16, true, 24},
                        {6, 2, 16, true, 24},     {8, 2, 16, false, 24},      {8, 2, 8, true, 5000},
                        {8, 2, 64, true, 7},      {32, 8, 16, true, 128},     {8, 2, 8, true, 40, 16},
                        {8, 2, 32, true, 9, 16},  {8, 2, 64, false, 7, 16},   {32, 8, 64, true, 5, 16}};
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (const Case& cs : cases) {
        EntmaxShape sh;
        sh.batch = 4, sh.heads = cs.heads, sh.kv_heads = cs.kv_heads, sh.head_dim = D, sh.dtype = dtype;
        sh.page_size = cs.P, sh.block_size = cs.block;
        sh.seq_lens = {16 * 260 + 3, 16 * 54, 1, 0};
        sh.key_scale = 2.0f;
        EntmaxProblem pr = MakeEntmaxProblem(sh, 500 + D + cs.heads * 7 + cs.kv_heads + cs.P + cs.block);
        ASSERT_TRUE(FillStats(&pr, EntmaxStatKind::kMinMax));
        const int hs = cs.shared ? cs.kv_heads : cs.heads;
        std::vector<float> u(static_cast<size_t>(sh.batch) * hs * pr.max_blocks, 0.0f);
        EntmaxCriticalityParams c;
        c.kv = pr.Kv(), c.query = pr.Query(), c.stats = pr.Stats(), c.u = u.data(), c.select_heads = hs;
        ASSERT_TRUE(EntmaxCriticalityRef(c));
        SelectionBuffers sel(sh.batch, hs, pr.max_blocks);
        EntmaxTopkPackParams t;
        t.u = u.data(), t.seq_lens = pr.seq_lens.data(), t.batch = sh.batch, t.page_size = cs.P;
        t.max_blocks_per_seq = pr.max_blocks, t.sel = sel.View(), t.budget_pages = cs.budget, t.sink_pages = 2;
        ASSERT_TRUE(EntmaxTopkPackRef(t));
        const int B = sh.batch, H = sh.heads, MT = pr.max_blocks * cs.P;
        std::vector<uint8_t> out(static_cast<size_t>(B) * H * D * pr.Esz(), kPoison);
        std::vector<float> tau(B * H, NAN), mass(B * H, NAN);
        EntmaxSparseDecodeParams p;
        p.kv = pr.Kv(), p.query = pr.Query(), p.sel = sel.View(), p.out = out.data();
        p.max_sel_tokens = MT, p.tau = tau.data(), p.mass = mass.data();
        p.alpha = 1.0f, p.scale = 1.0f / std::sqrt(float(D));
        ASSERT_TRUE(EntmaxSoftmaxFastPath(p));
        ASSERT_TRUE(EntmaxSparseDecodeRef(p));  // scores == nullptr: the twin uses its own row
        DevArena a;
        DevProblem d = Upload(pr, pr.Kv(), &a);
        EntmaxSparseDecodeParams g = p;
        g.kv = d.kv, g.query = d.query;
        g.sel.pages = a.Up(sel.pages), g.sel.page_count = a.Up(sel.count), g.sel.sel_len = a.Up(sel.sel_len);
        const int planned = PlanEntmaxSoftmaxDecodeSplits(B, hs, MT, 132);
        // max_sel_tokens: a loose bound, and the longest list exactly (what the
        // engine passes; the kernel then loads that length's list entries
        // beside sel_len, and reloads them for the shorter lists).
        const int exact = std::max(1, *std::max_element(sel.sel_len.begin(), sel.sel_len.end()));
        for (int mt : {MT, exact})
        for (int splits : {1, 2, 7, planned, 128}) {
          g.max_sel_tokens = mt;
          std::vector<uint8_t> gout(out.size(), kPoison);
          std::vector<float> nanv(B * H, NAN);
          g.out = a.Up(gout);
          g.tau = a.Up(nanv), g.mass = a.Up(nanv);
          g.num_splits = splits;
          g.partial_out = static_cast<float*>(a.Alloc(EntmaxSparseDecodeWorkspaceBytes(B, H, splits, D)));
          g.partial_lse = static_cast<float*>(a.Alloc(EntmaxSparseDecodeLseBytes(B, H, splits)));
          ASSERT_CUDA(LaunchEntmaxSparseDecode(g, nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          gout = Down(static_cast<uint8_t*>(g.out), gout.size());
          const std::vector<float> gtau = Down(g.tau, tau.size()), gmass = Down(g.mass, mass.size());
          std::vector<float> want, got;
          for (size_t i = 0; i < static_cast<size_t>(B) * H * D; ++i) {
            want.push_back(LoadAsFloat(out.data(), i, dtype));
            got.push_back(LoadAsFloat(gout.data(), i, dtype));
            ASSERT_FALSE(std::isnan(got.back())) << "unwritten output " << i;
          }
          const std::string what = std::string(KvDTypeName(dtype)) + " D" + std::to_string(D) + " H" +
                                   std::to_string(H) + " Hkv" + std::to_string(cs.kv_heads) + " Hs" +
                                   std::to_string(hs) + " P" + std::to_string(cs.P) + " Pb" + std::to_string(cs.block) +
                                   " S" + std::to_string(splits) +
                                   " MT" + std::to_string(mt);
          EXPECT_LT(RelErr(want, got), dtype == KvDType::kFp32 ? 1e-4 : 2e-3) << what;
          for (int i = 0; i < B * H; ++i) {
            EXPECT_NEAR(gtau[i], tau[i], 1e-3 * std::max(1.0f, std::fabs(tau[i]))) << what << " " << i;
            EXPECT_NEAR(gmass[i], mass[i], 1e-3) << what << " " << i;
          }
        }
      }
    }
  }
}

TEST(EntmaxCuda, LaunchersRejectInvalidParamsWithoutLaunching) {
  SKIP_WITHOUT_DEVICE();
  EXPECT_EQ(LaunchEntmaxPageStats(EntmaxPageStatsParams{}, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchEntmaxCriticality(EntmaxCriticalityParams{}, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchEntmaxTopkPack(EntmaxTopkPackParams{}, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchEntmaxSparseDecode(EntmaxSparseDecodeParams{}, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kvstream
