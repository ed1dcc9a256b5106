// CPU twins of K4 gauss_stats, K5 tau_hat and K6 gauss_select_pack
// (entmax_gauss.h), plus their validators.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/entmax_kv/entmax_gauss.h"
#include "kernels/entmax_kv/entmax_gauss_math.h"
#include "kernels/entmax_kv/entmax_page_stats.h"

namespace kvstream {

const char* EntmaxGaussStatsValidate(const EntmaxGaussStatsParams& p) {
  if (const char* e = EntmaxPagedKvValidate(p.kv)) return e;
  if (p.query.num_heads <= 0 || p.query.num_heads % p.kv.num_kv_heads != 0)
    return "query.num_heads must be a positive multiple of kv.num_kv_heads";
  if (!(p.scale > 0.0f)) return "scale must be > 0 (1/sqrt(D))";
  if (p.kv.batch > 0 && (p.query.q == nullptr || p.stats.kmean == nullptr || p.stats.kstd == nullptr ||
                         p.mu == nullptr || p.sigma == nullptr || p.mu_g == nullptr || p.sigma_g == nullptr))
    return "query.q, stats.kmean, stats.kstd, mu, sigma, mu_g and sigma_g are required";
  return nullptr;
}

const char* EntmaxTauHatValidate(const EntmaxTauHatParams& p) {
  if (p.batch < 0 || p.num_heads <= 0 || p.page_size <= 0 || p.max_blocks_per_seq <= 0)
    return "batch >= 0, num_heads, page_size and max_blocks_per_seq >= 1";
  if (p.alpha != 1.5f && p.alpha != 2.0f) return "alpha must be 1.5 or 2 (Gaussian needs entmax)";
  if (p.batch > 0 && (p.mu_g == nullptr || p.sigma_g == nullptr || p.seq_lens == nullptr || p.tau_hat == nullptr))
    return "mu_g, sigma_g, seq_lens and tau_hat are required";
  return nullptr;
}

const char* EntmaxGaussSelectValidate(const EntmaxGaussSelectParams& p) {
  if (p.batch < 0 || p.num_heads <= 0 || p.page_size <= 0 || p.max_blocks_per_seq <= 0)
    return "batch >= 0, num_heads, page_size and max_blocks_per_seq >= 1";
  if (p.sel.select_heads <= 0 || p.num_heads % p.sel.select_heads != 0 || p.num_heads / p.sel.select_heads > 64)
    return "sel.select_heads must divide num_heads, at most 64 heads per list";
  if (p.alpha != 1.5f && p.alpha != 2.0f) return "alpha must be 1.5 or 2 (Gaussian needs entmax)";
  if (!(p.safety_margin_z >= 0.0f && p.safety_margin_z <= 5.0f)) return "safety_margin_z must be in [0, 5]";
  if (!(p.excess_fraction >= 0.0f && p.excess_fraction <= 1.0f)) return "excess_fraction must be in [0, 1]";
  if (!(p.max_selected_fraction > 0.0f && p.max_selected_fraction <= 1.0f))
    return "max_selected_fraction must be in (0, 1]";
  if (p.sink_pages < 0 || p.sink_pages > 8) return "sink_pages must be in [0, 8]";
  if (p.min_context < 0) return "min_context must be >= 0";
  if (p.batch > 0 && (p.mu == nullptr || p.sigma == nullptr || p.sigma_g == nullptr || p.tau_hat == nullptr ||
                      p.seq_lens == nullptr || p.tau == nullptr || p.sel.pages == nullptr ||
                      p.sel.page_count == nullptr || p.sel.sel_len == nullptr))
    return "mu, sigma, sigma_g, tau_hat, seq_lens, tau and sel buffers are required";
  return nullptr;
}

bool EntmaxGaussStatsRef(const EntmaxGaussStatsParams& p) {
  if (EntmaxGaussStatsValidate(p) != nullptr) return false;
  const EntmaxPagedKv& kv = p.kv;
  const int H = p.query.num_heads, D = kv.head_dim, MB = kv.max_blocks_per_seq, group = H / kv.num_kv_heads;
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  for (int b = 0; b < kv.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
    for (int pg = 0; pg < s.hist; ++pg) {
      if (!EntmaxPageBlocksValid(kv, b, pg, 1)) return false;
    }
  }
  for (int b = 0; b < kv.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
    for (int h = 0; h < H; ++h) {
      const int64_t bh = static_cast<int64_t>(b) * H + h;
      double sum_mu = 0.0, sum_var = 0.0;
      for (int pg = 0; pg < s.hist; ++pg) {
        const size_t st = static_cast<size_t>((EntmaxStatsSlot(kv, b, pg) * kv.num_kv_heads + h / group) * D);
        float mu = 0.0f, var = 0.0f;
        for (int d = 0; d < D; ++d) {
          const float qs = p.scale * LoadAsFloat(p.query.q, static_cast<size_t>(b * qsb + h * qsh + d), kv.dtype);
          const float sd = p.stats.kstd[st + d];
          mu += qs * p.stats.kmean[st + d];
          var += qs * qs * (sd * sd);
        }
        p.mu[bh * MB + pg] = mu;
        p.sigma[bh * MB + pg] = std::sqrt(var);
        sum_mu += mu;
        sum_var += var;
      }
      double mu_g = 0.0, sigma_g = kEntmaxStdFloor;
      if (s.hist > 0) {
        const double mean = sum_mu / s.hist;
        double vm = 0.0;
        for (int pg = 0; pg < s.hist; ++pg) vm += (p.mu[bh * MB + pg] - mean) * (p.mu[bh * MB + pg] - mean);
        mu_g = mean;
        sigma_g = std::max(std::sqrt(sum_var / s.hist + vm / s.hist), static_cast<double>(kEntmaxStdFloor));
        if (std::isnan(mu_g) || std::isnan(sigma_g)) mu_g = 0.0, sigma_g = kEntmaxStdFloor;
      }
      p.mu_g[bh] = static_cast<float>(mu_g);
      p.sigma_g[bh] = static_cast<float>(sigma_g);
    }
  }
  return true;
}

bool EntmaxTauHatRef(const EntmaxTauHatParams& p) {
  if (EntmaxTauHatValidate(p) != nullptr) return false;
  for (int b = 0; b < p.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], p.page_size, p.max_blocks_per_seq);
    for (int h = 0; h < p.num_heads; ++h) {
      const int64_t bh = static_cast<int64_t>(b) * p.num_heads + h;
      p.tau_hat[bh] = s.hist == 0 ? 0.0f
                                  : static_cast<float>(EntmaxTauHat<double>(p.mu_g[bh], p.sigma_g[bh],
                                                                           double(s.hist) * p.page_size, p.alpha));
    }
  }
  return true;
}

bool EntmaxGaussSelectRef(const EntmaxGaussSelectParams& p) {
  if (EntmaxGaussSelectValidate(p) != nullptr) return false;
  const int H = p.num_heads, hs = p.sel.select_heads, per_list = H / hs, MB = p.max_blocks_per_seq;
  const float a = p.alpha - 1.0f;
  for (int b = 0; b < p.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], p.page_size, MB);
    const bool dense = s.tokens < p.min_context;
    const int sinks = std::min(p.sink_pages, s.hist);
    const int cap = static_cast<int>(std::ceil(static_cast<double>(p.max_selected_fraction) * s.hist));
    for (int l = 0; l < hs; ++l) {
      const int64_t row = static_cast<int64_t>(b) * hs + l;
      std::vector<float> floor_h(per_list);
      for (int i = 0; i < per_list; ++i) {
        const int64_t bh = static_cast<int64_t>(b) * H + l * per_list + i;
        double u = 0.0;
        for (int pg = 0; pg < s.hist; ++pg) u += p.mu[bh * MB + pg] + 1.5f * p.sigma[bh * MB + pg];
        u = s.hist > 0 ? u / s.hist : 0.0;
        const float excess = std::max(p.tau_hat[bh] / a - static_cast<float>(u), 0.0f);
        const float delta = std::max(p.safety_margin_z * p.sigma_g[bh], p.excess_fraction * excess);
        floor_h[i] = p.tau_hat[bh] - a * delta;
      }
      std::vector<int> keep;
      std::vector<std::pair<uint64_t, int>> cand;
      for (int pg = 0; pg < s.hist; ++pg) {
        if (dense || pg < sinks) {
          keep.push_back(pg);
          continue;
        }
        bool any = false;
        float best = 0.0f;
        for (int i = 0; i < per_list; ++i) {
          const int64_t bh = static_cast<int64_t>(b) * H + l * per_list + i;
          const float score = p.mu[bh * MB + pg] + p.z_page * p.sigma[bh * MB + pg];
          if (a * score > floor_h[i]) best = any ? std::max(best, score) : score, any = true;
        }
        if (any) cand.push_back({EntmaxPageRankKey(best, pg), pg});
      }
      std::stable_sort(cand.begin(), cand.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
      if (static_cast<int>(cand.size()) > cap) cand.resize(cap);
      for (const auto& c : cand) keep.push_back(c.second);
      std::sort(keep.begin(), keep.end());
      for (int i = 0; i < per_list; ++i) {
        const int64_t bh = static_cast<int64_t>(b) * H + l * per_list + i;
        float tau = p.tau_hat[bh];
        if (p.clamp_tau && !keep.empty()) {
          float cmax = -INFINITY;
          for (int pg : keep) cmax = std::max(cmax, p.mu[bh * MB + pg] + p.z_clamp * p.sigma[bh * MB + pg] / 3.0f);
          tau = std::min(tau, std::max(a * cmax - 1e-4f, floor_h[i]));
        }
        p.tau[bh] = tau;
      }
      const int nh = static_cast<int>(keep.size());
      if (s.pages > 0) keep.push_back(s.pages - 1);
      std::copy(keep.begin(), keep.end(), p.sel.pages + row * MB);
      p.sel.page_count[row] = static_cast<int32_t>(keep.size());
      p.sel.sel_len[row] = s.pages > 0 ? nh * p.page_size + s.tail_len : 0;
    }
  }
  return true;
}

}  // namespace kvstream
