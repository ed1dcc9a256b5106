// EntmaxKV K4 gauss_stats, K5 tau_hat, K6 gauss_select_pack on the GPU vs
// their CPU twins (entmax_kv.md §9 test 5), NaN-poisoned outputs. Skips with a
// reason where no CUDA device is present.
// Bounds: mu/sigma/mu_g/sigma_g within 1e-5 * (1 + |x|) (fp32 sums in another
// order); tau-hat within 1e-3 * max(1, |tau|) of the fp64 twin (§9 test 5);
// K6 lists identical and tau within 1e-6 * (1 + |tau|) on the SAME inputs.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/entmax_kv/entmax_gauss_math.h"
#include "tests/kernels/entmax_kv/entmax_cuda_util.h"

namespace kvstream {
namespace {

using namespace testing;  // NOLINT: test-local helpers

void ExpectNear(const std::vector<float>& want, const std::vector<float>& got, double rel, const char* what) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(want[i])) { EXPECT_TRUE(std::isnan(got[i])) << what << " " << i; continue; }
    ASSERT_NEAR(got[i], want[i], rel * (1 + std::fabs(want[i]))) << what << " " << i;
  }
}

TEST(EntmaxGaussCuda, StatsTauHatAndSelectMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32}) {
    for (int D : {64, 128}) {
      for (int kv_heads : {8, 2, 1}) {
        for (float alpha : {1.5f, 2.0f}) {
          EntmaxShape sh;
          sh.batch = 3, sh.heads = 8, sh.kv_heads = kv_heads, sh.head_dim = D, sh.dtype = dtype;
          sh.seq_lens = {16 * 97 + 3, 16 * 54, 9};
          EntmaxProblem pr = MakeEntmaxProblem(sh, 700 + D + kv_heads);
          ASSERT_TRUE(FillStats(&pr, EntmaxStatKind::kMeanStd));
          const int B = 3, H = 8, MB = pr.max_blocks;
          DevArena a;
          DevProblem d = Upload(pr, pr.Kv(), &a);
          std::vector<float> mu(B * H * MB, NAN), sigma(mu), mu_g(B * H, NAN), sigma_g(mu_g), th(mu_g), tau(mu_g);
          EntmaxGaussStatsParams s;
          s.kv = pr.Kv(), s.query = pr.Query(), s.stats = pr.Stats(), s.scale = 1.0f / std::sqrt(float(D));
          s.mu = mu.data(), s.sigma = sigma.data(), s.mu_g = mu_g.data(), s.sigma_g = sigma_g.data();
          ASSERT_TRUE(EntmaxGaussStatsRef(s));
          EntmaxGaussStatsParams gs = s;
          gs.kv = d.kv, gs.query = d.query, gs.stats = d.stats;
          gs.mu = a.Up(std::vector<float>(mu.size(), NAN)), gs.sigma = a.Up(std::vector<float>(mu.size(), NAN));
          gs.mu_g = a.Up(std::vector<float>(B * H, NAN)), gs.sigma_g = a.Up(std::vector<float>(B * H, NAN));
          ASSERT_CUDA(LaunchEntmaxGaussStats(gs, nullptr));
          ExpectNear(mu, Down(gs.mu, mu.size()), 1e-5, "mu");
          ExpectNear(sigma, Down(gs.sigma, mu.size()), 1e-5, "sigma");
          ExpectNear(mu_g, Down(gs.mu_g, mu_g.size()), 1e-5, "mu_g");
          ExpectNear(sigma_g, Down(gs.sigma_g, mu_g.size()), 1e-5, "sigma_g");

          EntmaxTauHatParams t;
          t.mu_g = mu_g.data(), t.sigma_g = sigma_g.data(), t.seq_lens = pr.seq_lens.data(), t.tau_hat = th.data();
          t.batch = B, t.num_heads = H, t.page_size = 16, t.max_blocks_per_seq = MB, t.alpha = alpha;
          ASSERT_TRUE(EntmaxTauHatRef(t));
          EntmaxTauHatParams gt = t;
          gt.mu_g = a.Up(mu_g), gt.sigma_g = a.Up(sigma_g), gt.seq_lens = d.kv.seq_lens;
          gt.tau_hat = a.Up(std::vector<float>(B * H, NAN));
          ASSERT_CUDA(LaunchEntmaxTauHat(gt, nullptr));
          const std::vector<float> gth = Down(gt.tau_hat, th.size());
          for (size_t i = 0; i < th.size(); ++i) EXPECT_NEAR(gth[i], th[i], 1e-3 * std::max(1.0f, std::fabs(th[i]))) << i;

          for (int hs : {kv_heads, H}) {
            SelectionBuffers hsel(B, hs, MB), gsel(B, hs, MB);
            EntmaxGaussSelectParams g;
            g.mu = mu.data(), g.sigma = sigma.data(), g.sigma_g = sigma_g.data(), g.tau_hat = th.data();
            g.seq_lens = pr.seq_lens.data(), g.batch = B, g.num_heads = H, g.page_size = 16, g.max_blocks_per_seq = MB;
            g.sel = hsel.View(), g.tau = tau.data(), g.alpha = alpha, g.sink_pages = 1, g.max_selected_fraction = 0.5f;
            g.z_page = static_cast<float>(EntmaxPageMaxZ(0.995, 16));
            g.z_clamp = static_cast<float>(EntmaxPageMaxZ(0.5, 16));
            ASSERT_TRUE(EntmaxGaussSelectRef(g));
            EntmaxGaussSelectParams gg = g;
            gg.mu = a.Up(mu), gg.sigma = a.Up(sigma), gg.sigma_g = a.Up(sigma_g), gg.tau_hat = a.Up(th);
            gg.seq_lens = d.kv.seq_lens, gg.tau = a.Up(std::vector<float>(B * H, NAN));
            gg.sel.pages = a.Up(gsel.pages), gg.sel.page_count = a.Up(gsel.count), gg.sel.sel_len = a.Up(gsel.sel_len);
            ASSERT_CUDA(LaunchEntmaxGaussSelect(gg, nullptr));
            gsel.pages = Down(gg.sel.pages, gsel.pages.size());
            gsel.count = Down(gg.sel.page_count, gsel.count.size());
            gsel.sel_len = Down(gg.sel.sel_len, gsel.sel_len.size());
            EXPECT_EQ(gsel.count, hsel.count);
            EXPECT_EQ(gsel.sel_len, hsel.sel_len);
            for (int b = 0; b < B; ++b)
              for (int l = 0; l < hs; ++l) EXPECT_EQ(gsel.List(b, l), hsel.List(b, l)) << "b " << b << " l " << l;
            ExpectNear(tau, Down(gg.tau, tau.size()), 1e-6, "tau");
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvstream
