// CPU twin of K7 sparse_decode (entmax_sparse_decode.h): per (sequence, query
// head) the selected tokens' scores in fp32 (written to the scratch like the
// kernel), tau with entmax_math.h in fp64, fp64 weighted value sums.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/entmax_kv/entmax_math.h"
#include "kernels/entmax_kv/entmax_sparse_decode.h"

namespace kvstream {
namespace {

// tau for alpha > 1 from the scores z[0..n), n >= 1 (header: tau_mode rules).
double EntmaxTau(const float* z, int n, const EntmaxSparseDecodeParams& p, double tau_init) {
  const float alpha = p.alpha;
  const double m = *std::max_element(z, z + n);
  auto moments = [&](double tau) {
    EntmaxMoments<double> mo;
    for (int j = 0; j < n; ++j) mo.Add(z[j], tau, alpha);
    return mo;
  };
  if (p.tau_mode == EntmaxTauMode::kFixed) return tau_init;
  if (p.tau_mode == EntmaxTauMode::kCorrected) {
    EntmaxHybridState<double> st;
    st.lo = m - 1, st.hi = m;
    double tau = EmClamp(tau_init, st.lo, st.hi);
    for (int it = 0; it < p.correction_iters; ++it) {
      if (!EntmaxHybridStep(&tau, moments(tau), alpha, &st)) break;
    }
    return tau;
  }
  int counts[kEntmaxHistBins] = {};
  for (int j = 0; j < n; ++j) {
    const int bin = static_cast<int>(std::floor(kEntmaxHistBins * (static_cast<double>(z[j]) - m + 1)));
    if (bin >= 0) ++counts[std::min(bin, kEntmaxHistBins - 1)];
  }
  double lo = m - 1, hi = m - EmPow(static_cast<double>(n), 1.0 - alpha);
  double tau = EmClamp(EntmaxHistogramTau0<double>(counts, m, alpha) + 1.0 / 32, lo, hi);
  for (int it = 0; it < p.niter; ++it) tau = EntmaxExactStep(tau, moments(tau), alpha, &lo, &hi);
  return tau;
}

}  // namespace

bool EntmaxSparseDecodeRef(const EntmaxSparseDecodeParams& p) {
  if (EntmaxSparseDecodeValidate(p) != nullptr) return false;
  const EntmaxPagedKv& kv = p.kv;
  const int H = p.query.num_heads, D = kv.head_dim, P = kv.page_size, MB = kv.max_blocks_per_seq;
  const int hs = p.sel.select_heads, per_list = H / hs, group = H / kv.num_kv_heads;
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const int64_t osb = p.out_stride_b ? p.out_stride_b : static_cast<int64_t>(H) * D;
  const int64_t osh = p.out_stride_h ? p.out_stride_h : D;
  auto sel_tokens = [&](int64_t row) {
    const int64_t cap = std::min<int64_t>(p.max_sel_tokens, static_cast<int64_t>(p.sel.page_count[row]) * P);
    return static_cast<int>(std::clamp<int64_t>(p.sel.sel_len[row], 0, std::max<int64_t>(cap, 0)));
  };
  // Logical token of the list's j-th selected token (-1: page id out of range).
  auto token_of = [&](int64_t row, int j) -> int {
    const int32_t logical = p.sel.pages[row * MB + j / P];
    if (logical < 0 || logical >= MB) return -1;
    return logical * P + j % P;
  };
  for (int b = 0; b < kv.batch; ++b) {
    for (int l = 0; l < hs; ++l) {
      const int64_t row = static_cast<int64_t>(b) * hs + l;
      for (int j = 0; j < sel_tokens(row); ++j) {
        const int t = token_of(row, j);
        if (t < 0) return false;
        const int32_t blk = EntmaxBlockOf(kv, b, t);
        if (blk < 0 || blk >= kv.num_blocks) return false;
      }
    }
  }
  const double zscale = p.alpha == 1.0f ? 1.0 : p.alpha - 1.0;
  std::vector<double> acc(D);
  std::vector<float> zloc;
  for (int b = 0; b < kv.batch; ++b) {
    for (int h = 0; h < H; ++h) {
      const int64_t row = static_cast<int64_t>(b) * hs + h / per_list, bh = static_cast<int64_t>(b) * H + h;
      const int g = h / group, n = sel_tokens(row);
      // The alpha-1 fast path writes no scratch (scores may be null): use a local row.
      if (p.scores == nullptr) zloc.resize(static_cast<size_t>(std::max(n, 1)));
      float* z = p.scores ? p.scores + bh * p.max_sel_tokens : zloc.data();
      auto kv_at = [&](const void* pool, int j, int d) {
        return LoadAsFloat(pool, static_cast<size_t>(EntmaxTokenOffset(kv, b, g, token_of(row, j)) + d), kv.dtype);
      };
      for (int j = 0; j < n; ++j) {
        float dot = 0.0f;
        for (int d = 0; d < D; ++d) dot += LoadAsFloat(p.query.q, static_cast<size_t>(b * qsb + h * qsh + d), kv.dtype) * kv_at(kv.k_pool, j, d);
        z[j] = static_cast<float>(zscale * p.scale) * dot;
      }
      double tau = 0.0, mass = 0.0;
      int support = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      if (n > 0) {
        if (p.alpha == 1.0f) {
          const double m = *std::max_element(z, z + n);
          double se = 0.0;
          for (int j = 0; j < n; ++j) se += std::exp(z[j] - m);
          tau = m + std::log(se);
        } else {
          tau = EntmaxTau(z, n, p, p.tau_init ? p.tau_init[bh] : 0.0);
        }
        // The weights use tau rounded to fp32, as the kernel stores and reads it.
        const double tf = static_cast<float>(tau);
        for (int j = 0; j < n; ++j) {
          const double w = p.alpha == 1.0f ? std::exp(z[j] - tf) : EntmaxSparseWeight<double>(z[j], tf, p.alpha);
          if (!(w > 0.0)) continue;
          mass += w;
          ++support;
          for (int d = 0; d < D; ++d) acc[d] += w * kv_at(kv.v_pool, j, d);
        }
      }
      const double norm = p.normalize_output && mass > 0.0 ? 1.0 / mass : 1.0;
      for (int d = 0; d < D; ++d) StoreFromFloat(p.out, static_cast<size_t>(b * osb + h * osh + d), static_cast<float>(acc[d] * norm), kv.dtype);
      p.tau[bh] = static_cast<float>(tau);
      p.mass[bh] = static_cast<float>(mass);
      if (p.support) p.support[bh] = support;
    }
  }
  return true;
}

}  // namespace kvstream
