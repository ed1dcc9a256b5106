// K4 gauss_stats, K5 tau_hat, K6 gauss_select_pack twins (entmax_kv.md §9
// test 5): truncated moments vs closed values and numeric integration, tau-hat
// vs a brute-force root and its fp32 instantiation, the quantiles of §4, the
// page statistics vs fp64 sums, and the selection rule reproduced page for
// page (z = 0.3, q = 0.995, excess 0.1) with union, cap, sinks and clamp.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/entmax_kv/entmax_gauss_math.h"
#include "tests/kernels/entmax_kv/entmax_problem.h"

namespace kvstream {
namespace {

using namespace testing;  // NOLINT: test-local helpers

// E[(Y)_+^beta] by the trapezoid rule over +-12 sigma.
double NumericMoment(double mu, double s, double beta) {
  const int n = 200000;
  const double lo = std::max(0.0, mu - 12 * s), hi = std::max(0.0, mu + 12 * s), h = (hi - lo) / n;
  double acc = 0.0;
  for (int i = 0; i <= n; ++i) {
    const double y = lo + i * h, w = (i == 0 || i == n) ? 0.5 : 1.0;
    acc += w * std::pow(y, beta) * std::exp(-0.5 * (y - mu) * (y - mu) / (s * s));
  }
  return acc * h / (s * std::sqrt(2 * M_PI));
}

TEST(GaussMath, TruncatedMomentsMatchClosedValuesAndIntegration) {
  double e, e1, e2;
  EntmaxGaussMoment<double>(0.0, 1.0, 2.0f, &e, &e1, &e2);
  EXPECT_NEAR(e, 1.0 / std::sqrt(2 * M_PI), 1e-12);  // E[Z+]
  EntmaxGaussMoment<double>(0.0, 1.0, 1.5f, &e, &e1, &e2);
  EXPECT_NEAR(e, 0.5, 1e-12);  // E[Z+^2]
  for (float alpha : {1.5f, 2.0f}) {
    for (double mu : {-2.0, -0.3, 0.0, 1.7}) {
      for (double s : {0.2, 1.0, 3.0}) {
        const double beta = alpha == 2.0f ? 1.0 : 2.0;
        EntmaxGaussMoment<double>(mu, s, alpha, &e, &e1, &e2);
        EXPECT_NEAR(e, NumericMoment(mu, s, beta), 1e-6 * std::max(1.0, e));
        // d/dtau = -d/dmu: central differences.
        const double hh = 1e-4;
        double ep, em, x1, x2;
        EntmaxGaussMoment<double>(mu + hh, s, alpha, &ep, &x1, &x2);
        EntmaxGaussMoment<double>(mu - hh, s, alpha, &em, &x1, &x2);
        EXPECT_NEAR(e1, -(ep - em) / (2 * hh), 1e-6);
        EXPECT_NEAR(e2, (ep - 2 * e + em) / (hh * hh), 1e-3);
      }
    }
  }
}

TEST(GaussMath, TauHatIsTheRootAndFp32AgreesWithFp64) {
  for (float alpha : {1.5f, 2.0f}) {
    for (double mu_g : {-1.0, 0.0, 0.4}) {
      for (double sigma_g : {1e-6, 0.05, 0.8, 3.0}) {
        for (double n_tok : {16.0, 1024.0, 524288.0}) {
          const double tau = EntmaxTauHat<double>(mu_g, sigma_g, n_tok, alpha);
          const double a = alpha - 1.0;
          auto f = [&](double t) {
            double e, e1, e2;
            EntmaxGaussMoment<double>(a * mu_g - t, a * sigma_g, alpha, &e, &e1, &e2);
            return n_tok * e - 1.0;
          };
          // Brute force: f decreases in tau; bisect the stated bracket 300 times.
          const double half = a * sigma_g * (std::sqrt(2 * std::log(n_tok + 1)) + 8);
          double lo = a * mu_g - half, hi = a * mu_g + half;
          for (int i = 0; i < 300; ++i) (f(0.5 * (lo + hi)) > 0 ? lo : hi) = 0.5 * (lo + hi);
          const double want = 0.5 * (lo + hi);
          EXPECT_NEAR(tau, want, 1e-6 * std::max(1.0, std::fabs(want)))
              << "alpha " << alpha << " mu " << mu_g << " sigma " << sigma_g << " n " << n_tok;
          const float tf = EntmaxTauHat<float>(float(mu_g), float(sigma_g), float(n_tok), alpha);
          EXPECT_NEAR(tf, tau, 1e-3 * std::max(1.0, std::fabs(tau)));
        }
      }
    }
  }
}

TEST(GaussMath, PageMaxQuantilesOfTheSpec) {
  EXPECT_NEAR(EntmaxPageMaxZ(0.995, 16), 3.420, 5e-4);
  EXPECT_NEAR(EntmaxPageMaxZ(0.5, 16), 1.724, 5e-4);
  EXPECT_NEAR(EntmaxNormalQuantile(0.5), 0.0, 1e-12);
}

TEST(GaussStatsTwin, MatchesFp64SumsAndGroupMoments) {
  EntmaxShape sh;
  sh.batch = 2, sh.heads = 8, sh.kv_heads = 2;
  sh.seq_lens = {16 * 13 + 2, 16};
  EntmaxProblem pr = MakeEntmaxProblem(sh, 501);
  ASSERT_TRUE(FillStats(&pr, EntmaxStatKind::kMeanStd));
  const int H = 8, MB = pr.max_blocks, D = 64;
  std::vector<float> mu(2 * H * MB, NAN), sigma(mu), mu_g(2 * H, NAN), sigma_g(mu_g);
  EntmaxGaussStatsParams p;
  p.kv = pr.Kv(), p.query = pr.Query(), p.stats = pr.Stats();
  p.mu = mu.data(), p.sigma = sigma.data(), p.mu_g = mu_g.data(), p.sigma_g = sigma_g.data();
  p.scale = 1.0f / 8.0f;
  ASSERT_TRUE(EntmaxGaussStatsRef(p));
  for (int b = 0; b < 2; ++b) {
    const int hist = b == 0 ? 13 : 0;
    for (int h = 0; h < H; ++h) {
      double sm = 0, sv = 0, smm = 0;
      for (int pg = 0; pg < hist; ++pg) {
        const size_t st = (static_cast<size_t>(pr.block_table[b * MB + pg]) * 2 + h / 4) * D;
        double m = 0, v = 0;
        for (int d = 0; d < D; ++d) {
          const double q = pr.Q(b, h, d) / 8.0;
          m += q * pr.kmean[st + d];
          v += q * q * pr.kstd[st + d] * pr.kstd[st + d];
        }
        EXPECT_NEAR(mu[(b * H + h) * MB + pg], m, 1e-5);
        EXPECT_NEAR(sigma[(b * H + h) * MB + pg], std::sqrt(v), 1e-5);
        sm += m, sv += v, smm += m * m;
      }
      if (hist == 0) {
        EXPECT_EQ(mu_g[b * H + h], 0.0f);
        EXPECT_EQ(sigma_g[b * H + h], 1e-6f);
        continue;
      }
      const double mg = sm / hist, var = smm / hist - mg * mg;
      EXPECT_NEAR(mu_g[b * H + h], mg, 1e-5);
      EXPECT_NEAR(sigma_g[b * H + h], std::sqrt(sv / hist + var), 1e-5);
    }
  }
}

struct SelInputs {
  int B = 1, H = 4, MB = 0;
  std::vector<int32_t> seq_lens;
  std::vector<float> mu, sigma, sigma_g, tau_hat;
};

SelInputs RandomSel(std::vector<int32_t> lens, uint32_t seed) {
  SelInputs in;
  in.B = static_cast<int>(lens.size());
  in.seq_lens = lens;
  for (int t : lens) in.MB = std::max(in.MB, (t + 15) / 16);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  for (int i = 0; i < in.B * in.H * in.MB; ++i) {
    in.mu.push_back(0.5f * nd(rng));
    in.sigma.push_back(0.1f + 0.1f * std::fabs(nd(rng)));
  }
  for (int i = 0; i < in.B * in.H; ++i) {
    in.sigma_g.push_back(0.6f);
    in.tau_hat.push_back(0.5f * (0.6f + 0.3f * nd(rng)));
  }
  return in;
}

TEST(GaussSelectTwin, ReproducesTheRulePageForPageAndUnionsGroups) {
  SelInputs in = RandomSel({16 * 40 + 3, 16 * 7, 16, 0}, 601);
  const float z_page = static_cast<float>(EntmaxPageMaxZ(0.995, 16));
  for (int hs : {4, 2, 1}) {
    SelectionBuffers sel(in.B, hs, in.MB);
    std::vector<float> tau(in.B * in.H, NAN);
    EntmaxGaussSelectParams p;
    p.mu = in.mu.data(), p.sigma = in.sigma.data(), p.sigma_g = in.sigma_g.data(), p.tau_hat = in.tau_hat.data();
    p.seq_lens = in.seq_lens.data(), p.batch = in.B, p.num_heads = in.H, p.page_size = 16, p.max_blocks_per_seq = in.MB;
    p.sel = sel.View(), p.tau = tau.data(), p.alpha = 1.5f, p.safety_margin_z = 0.3f, p.excess_fraction = 0.1f;
    p.z_page = z_page, p.z_clamp = static_cast<float>(EntmaxPageMaxZ(0.5, 16));
    ASSERT_TRUE(EntmaxGaussSelectRef(p));
    for (int b = 0; b < in.B; ++b) {
      const int pages = (in.seq_lens[b] + 15) / 16, hist = std::max(pages - 1, 0);
      for (int l = 0; l < hs; ++l) {
        std::vector<int> want;
        for (int pg = 0; pg < hist; ++pg) {
          bool any = false;
          for (int h = l * (4 / hs); h < (l + 1) * (4 / hs); ++h) {
            const size_t r = (static_cast<size_t>(b) * 4 + h) * in.MB;
            double u = 0;
            for (int k = 0; k < hist; ++k) u += in.mu[r + k] + 1.5 * in.sigma[r + k];
            u /= hist;
            const double th = in.tau_hat[b * 4 + h];
            const double delta = std::max(0.3 * 0.6, 0.1 * std::max(th / 0.5 - u, 0.0));
            any |= 0.5 * (in.mu[r + pg] + z_page * in.sigma[r + pg]) > th - 0.5 * delta + 1e-6 ||
                   (0.5 * (in.mu[r + pg] + z_page * in.sigma[r + pg]) > th - 0.5 * delta - 1e-6 &&
                    std::find(sel.List(b, l).begin(), sel.List(b, l).end(), pg) != sel.List(b, l).end());
          }
          if (any) want.push_back(pg);
        }
        if (pages > 0) want.push_back(pages - 1);
        EXPECT_EQ(sel.List(b, l), want) << "hs " << hs << " b " << b << " l " << l;
        const size_t row = static_cast<size_t>(b) * hs + l;
        EXPECT_EQ(sel.sel_len[row], pages == 0 ? 0 : (static_cast<int>(want.size()) - 1) * 16 + in.seq_lens[b] - hist * 16);
      }
      for (int h = 0; h < 4; ++h) {
        EXPECT_LE(tau[b * 4 + h], in.tau_hat[b * 4 + h]);  // the clamp only lowers tau
        if (hist == 0) EXPECT_EQ(tau[b * 4 + h], in.tau_hat[b * 4 + h]);  // empty selection: tau = tau-hat
      }
    }
  }
}

TEST(GaussSelectTwin, CapKeepsBestPagesAndSinksOnTop) {
  SelInputs in = RandomSel({16 * 60 + 1}, 602);
  for (float& t : in.tau_hat) t = -5.0f;  // every page passes the floor
  SelectionBuffers sel(1, 1, in.MB);
  std::vector<float> tau(4);
  EntmaxGaussSelectParams p;
  p.mu = in.mu.data(), p.sigma = in.sigma.data(), p.sigma_g = in.sigma_g.data(), p.tau_hat = in.tau_hat.data();
  p.seq_lens = in.seq_lens.data(), p.batch = 1, p.num_heads = 4, p.page_size = 16, p.max_blocks_per_seq = in.MB;
  p.sel = sel.View(), p.tau = tau.data(), p.alpha = 2.0f, p.sink_pages = 2, p.max_selected_fraction = 0.25f;
  ASSERT_TRUE(EntmaxGaussSelectRef(p));
  const std::vector<int> got = sel.List(0, 0);
  ASSERT_EQ(got.size(), 2u + 15u + 1u);  // sinks + ceil(0.25 * 60) + tail
  EXPECT_EQ(got[0], 0);
  EXPECT_EQ(got[1], 1);
  EXPECT_EQ(got.back(), 60);
  // The 15 capped pages are the best by max over heads of mu + z sigma.
  std::vector<std::pair<float, int>> rank;
  for (int pg = 2; pg < 60; ++pg) {
    float m = -1e30f;
    for (int h = 0; h < 4; ++h) m = std::max(m, in.mu[h * in.MB + pg] + p.z_page * in.sigma[h * in.MB + pg]);
    rank.push_back({-m, pg});
  }
  std::sort(rank.begin(), rank.end());
  std::vector<int> want = {0, 1};
  for (int i = 0; i < 15; ++i) want.push_back(rank[i].second);
  std::sort(want.begin(), want.end());
  want.push_back(60);
  EXPECT_EQ(got, want);
}

TEST(GaussSelectTwin, ValidateRefusesSoftmaxAlpha) {
  EntmaxGaussSelectParams p;
  p.num_heads = 4, p.page_size = 16, p.max_blocks_per_seq = 4, p.sel.select_heads = 4, p.alpha = 1.0f;
  EXPECT_STREQ(EntmaxGaussSelectValidate(p), "alpha must be 1.5 or 2 (Gaussian needs entmax)");
}

}  // namespace
}  // namespace kvstream
