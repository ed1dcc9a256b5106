// Scalar math of the entmax tau solvers (entmax_kv.md §4 step 4, §6), shared
// by the CUDA kernels (R = float) and the CPU twins (R = double): the same
// decisions in the same order, so they differ only by rounding.
#pragma once

#include <math.h>

#include "kernels/common/host_device.h"
#include "kernels/entmax_kv/entmax_kv_layout.h"

namespace kvstream {

KV_HD float EmSqrt(float x) { return sqrtf(x); }
KV_HD double EmSqrt(double x) { return sqrt(x); }
KV_HD float EmPow(float x, float y) { return powf(x, y); }
KV_HD double EmPow(double x, double y) { return pow(x, y); }
template <class R>
KV_HD bool EmFinite(R x) { return (x - x) == R(0); }  // false for inf and NaN
template <class R>
KV_HD R EmClamp(R x, R lo, R hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Histogram start of the exact tau (§4 step 4): counts[b] = scores z with
// floor(16 (z - m + 1)) == b (capped at 15; the max is in bin 15). Walks bins
// top-down with the max alone at relative value 1 and every other score at
// its bin's lower edge b/16, keeping a bin while the closed-form constraint
// stays below 1; returns tau0 = m - 1 + the closed-form root of what it kept.
template <class R>
KV_HD R EntmaxHistogramTau0(const int* counts, R m, float alpha) {
  R s1 = 1, k = 1, s2 = 1;
  for (int b = kEntmaxHistBins - 1; b >= 0; --b) {
    const R c = static_cast<R>(counts[b] - (b == kEntmaxHistBins - 1 ? 1 : 0));
    const R e = static_cast<R>(b) / kEntmaxHistBins;
    const R s1n = s1 + c * e, kn = k + c, s2n = s2 + c * e * e;
    const R cons = alpha == 2.0f ? s1n - kn * e : kn * e * e - 2 * s1n * e + s2n;
    if (!(cons < R(1))) break;
    s1 = s1n, k = kn, s2 = s2n;
  }
  const R disc = s1 * s1 - k * (s2 - 1);
  const R rel = alpha == 2.0f ? (s1 - 1) / k : (s1 - EmSqrt(disc > 0 ? disc : R(0))) / k;
  return m - 1 + rel;
}

// Moments at tau over x = (z - tau)_+ > 0, for beta = 1/(alpha-1):
// a0 = sum x^beta, a1 = sum x^(beta-1), a2 = sum x^(beta-2) (alpha 2: a2 unused).
template <class R>
struct EntmaxMoments {
  R a0 = 0, a1 = 0, a2 = 0;
  KV_HD void Add(R z, R tau, float alpha) {
    const R x = z - tau;
    if (!(x > 0)) return;
    if (alpha == 2.0f) {
      a0 += x, a1 += 1;
    } else {  // alpha 1.5, beta 2
      a0 += x * x, a1 += x, a2 += 1;
    }
  }
};

// f = a0 - 1 and its tau derivatives f' = -beta a1, f'' = beta (beta-1) a2.
template <class R>
KV_HD void EntmaxF(const EntmaxMoments<R>& mo, float alpha, R* f, R* f1, R* f2) {
  const R beta = alpha == 2.0f ? R(1) : R(2);
  *f = mo.a0 - 1;
  *f1 = -beta * mo.a1;
  *f2 = alpha == 2.0f ? R(0) : beta * (beta - 1) * mo.a2;
}

// One exact-tau pass (§4 step 4, EXACT): f > 0 -> lo = tau, f < 0 -> hi = tau;
// the Halley candidate (Newton when 2f'^2 - f f'' < 1e-18) is accepted inside
// (lo - 1e-6, hi + 1e-6), else the bracket midpoint.
template <class R>
KV_HD R EntmaxExactStep(R tau, const EntmaxMoments<R>& mo, float alpha, R* lo, R* hi) {
  R f, f1, f2;
  EntmaxF(mo, alpha, &f, &f1, &f2);
  if (f > 0) *lo = tau;
  else if (f < 0) *hi = tau;
  else return tau;
  const R den = 2 * f1 * f1 - f * f2;
  const R cand = den < R(1e-18) ? (f1 != 0 ? tau - f / f1 : *lo + *hi) : tau - 2 * f * f1 / den;
  if (EmFinite(cand) && cand > *lo - R(1e-6) && cand < *hi + R(1e-6)) return cand;
  return (*lo + *hi) / 2;
}

// State of the CORRECTED refinement (§6): bracket and the previous point for
// the secant fallback.
template <class R>
struct EntmaxHybridState {
  R lo = 0, hi = 0, prev_tau = 0, prev_f = 0;
  bool has_prev = false;
};

// One CORRECTED step from tau with moments mo; returns false (tau kept) when
// |f| <= 1e-6. Candidates in order: Halley, Newton, secant (after the first
// step), bisection; each must lie strictly inside the updated bracket.
template <class R>
KV_HD bool EntmaxHybridStep(R* tau, const EntmaxMoments<R>& mo, float alpha, EntmaxHybridState<R>* st) {
  R f, f1, f2;
  EntmaxF(mo, alpha, &f, &f1, &f2);
  const R t = *tau;
  if ((f < 0 ? -f : f) <= R(1e-6)) return false;
  if (f > 0) st->lo = t; else st->hi = t;
  auto inside = [&](R c) { return EmFinite(c) && c > st->lo && c < st->hi; };
  const R den = 2 * f1 * f1 - f * f2;
  R next = (st->lo + st->hi) / 2;
  if (den >= R(1e-18) && inside(t - 2 * f * f1 / den)) {
    next = t - 2 * f * f1 / den;
  } else if (f1 != 0 && inside(t - f / f1)) {
    next = t - f / f1;
  } else if (st->has_prev && f != st->prev_f && inside(t - f * (t - st->prev_tau) / (f - st->prev_f))) {
    next = t - f * (t - st->prev_tau) / (f - st->prev_f);
  }
  st->prev_tau = t, st->prev_f = f, st->has_prev = true;
  *tau = next;
  return true;
}

// Entmax weight (z - tau)_+^beta for alpha 2 (beta 1) and 1.5 (beta 2); the
// softmax weight exp(z - tau) (alpha 1) is computed by each caller's exp.
template <class R>
KV_HD R EntmaxSparseWeight(R z, R tau, float alpha) {
  const R x = z > tau ? z - tau : R(0);
  return alpha == 2.0f ? x : x * x;
}

}  // namespace kvstream
