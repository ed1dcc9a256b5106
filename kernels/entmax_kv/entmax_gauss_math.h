// Scalar math of the Gaussian selector (entmax_kv.md §4 step 3b), shared by
// the K5 kernel (R = float) and its twin (R = double): truncated moments of a
// Gaussian and the single-Gaussian Halley-bisection solver for tau-hat.
#pragma once

#include <math.h>

#include "kernels/common/host_device.h"
#include "kernels/entmax_kv/entmax_math.h"

namespace kvstream {

inline constexpr int kEntmaxTauHatMaxIters = 120;

KV_HD float EmErfc(float x) { return erfcf(x); }
KV_HD double EmErfc(double x) { return erfc(x); }
KV_HD float EmExp(float x) { return expf(x); }
KV_HD double EmExp(double x) { return exp(x); }
KV_HD float EmLog(float x) { return logf(x); }
KV_HD double EmLog(double x) { return log(x); }

template <class R>
KV_HD R EmPhi(R x) { return R(0.5) * EmErfc(-x * R(0.70710678118654752440)); }  // standard normal cdf
template <class R>
KV_HD R EmPdf(R x) { return R(0.39894228040143267794) * EmExp(R(-0.5) * x * x); }  // standard normal pdf

// E = E[(Y)_+^beta] for Y ~ N(mu_y, sigma_y^2), beta = 1/(alpha-1), and its
// first two derivatives in tau (mu_y = (alpha-1) mu_g - tau), §4 step 3b:
//   alpha 2:   E = mu Phi + s phi,             E' = -Phi,              E'' = phi / s
//   alpha 1.5: E = (mu^2 + s^2) Phi + mu s phi, E' = -2 (mu Phi + s phi), E'' = 2 Phi
template <class R>
KV_HD void EntmaxGaussMoment(R mu_y, R sigma_y, float alpha, R* e, R* e1, R* e2) {
  const R xi = mu_y / sigma_y, cdf = EmPhi(xi), pdf = EmPdf(xi);
  if (alpha == 2.0f) {
    *e = mu_y * cdf + sigma_y * pdf;
    *e1 = -cdf;
    *e2 = pdf / sigma_y;
  } else {
    *e = (mu_y * mu_y + sigma_y * sigma_y) * cdf + mu_y * sigma_y * pdf;
    *e1 = -2 * (mu_y * cdf + sigma_y * pdf);
    *e2 = 2 * cdf;
  }
}

// tau-hat solving n_tok * E[((alpha-1) X - tau)_+^beta] = 1, X ~ N(mu_g, sigma_g^2)
// (§4 step 3b "Solver"): bracket (alpha-1) mu_g +- (alpha-1) sigma_g
// (sqrt(2 ln(n_tok+1)) + 8), start at its midpoint; each of <= 120 iterations
// takes the Halley candidate (Newton if 2f'^2 - f f'' < 1e-18), the midpoint
// if that is non-finite or outside (lo, hi), evaluates f there, moves lo
// (f > 0) or hi, stops when |f| <= 1e-6 (returning the candidate), else
// continues from the new midpoint.
template <class R>
KV_HD R EntmaxTauHat(R mu_g, R sigma_g, R n_tok, float alpha) {
  const R a1 = static_cast<R>(alpha) - 1;
  const R sy = a1 * sigma_g;
  const R half = sy * (EmSqrt(2 * EmLog(n_tok + 1)) + 8);
  R lo = a1 * mu_g - half, hi = a1 * mu_g + half, tau = (lo + hi) / 2;
  auto eval = [&](R t, R* f, R* f1, R* f2) {
    R e, e1, e2;
    EntmaxGaussMoment(a1 * mu_g - t, sy, alpha, &e, &e1, &e2);
    *f = n_tok * e - 1, *f1 = n_tok * e1, *f2 = n_tok * e2;
  };
  for (int it = 0; it < kEntmaxTauHatMaxIters; ++it) {
    R f, f1, f2;
    eval(tau, &f, &f1, &f2);
    const R den = 2 * f1 * f1 - f * f2;
    R cand = den < R(1e-18) ? tau - f / f1 : tau - 2 * f * f1 / den;
    if (!EmFinite(cand) || !(cand > lo && cand < hi)) cand = (lo + hi) / 2;
    R fc, g1, g2;
    eval(cand, &fc, &g1, &g2);
    if (fc > 0) lo = cand; else hi = cand;
    if ((fc < 0 ? -fc : fc) <= R(1e-6)) return cand;
    tau = (lo + hi) / 2;
  }
  return tau;
}

// Standard normal quantile Phi^-1(p) for p in (0, 1), fp64 host math for the
// host-computed z_page / z_clamp (§4 step 3b: 3.420 for 0.995^(1/16), 1.724 for
// 0.5^(1/16)): bisection on erfc to 1e-15.
inline double EntmaxNormalQuantile(double p) {
  if (!(p > 0.0 && p < 1.0)) return p <= 0.0 ? -INFINITY : INFINITY;
  double lo = -40.0, hi = 40.0;
  for (int i = 0; i < 200 && hi - lo > 1e-15; ++i) {
    const double mid = 0.5 * (lo + hi);
    (EmPhi(mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// z of the page-max quantile: Phi^-1(q^(1/P)) (z_page with max_quantile, the
// clamp's z_c with tau_clamp_page_max_quantile).
inline double EntmaxPageMaxZ(double quantile, int page_size) {
  return EntmaxNormalQuantile(pow(quantile, 1.0 / page_size));
}

}  // namespace kvstream
