// Independent fp64 oracles for the K7 tests: plain softmax attention, exact
// entmax by sorting (alpha 2 sparsemax; alpha 1.5 the closed form of
// entmax_kv.md §7's twin column), and tau by 200-step bisection over [m-1, m]
// (§9 test 3). They share no code with the kernels or the twin.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "tests/kernels/entmax_kv/entmax_problem.h"

namespace kvstream::testing {

// Tokens (absolute positions) a query head attends for a page list.
inline std::vector<int> TokensOf(const std::vector<int>& pages, int t, int P) {
  std::vector<int> tok;
  for (int pg : pages)
    for (int j = pg * P; j < std::min(t, pg * P + P); ++j) tok.push_back(j);
  return tok;
}

// z_j = zscale * q.k_j / sqrt(D) in fp64 over `tokens`.
inline std::vector<double> OracleScores(const EntmaxProblem& pr, int b, int h, const std::vector<int>& tokens,
                                        double zscale) {
  const int D = pr.shape.head_dim, g = h / (pr.shape.heads / pr.shape.kv_heads);
  std::vector<double> z;
  for (int t : tokens) {
    double dot = 0.0;
    for (int d = 0; d < D; ++d) dot += static_cast<double>(pr.Q(b, h, d)) * pr.K(b, g, t, d);
    z.push_back(zscale * dot / std::sqrt(static_cast<double>(D)));
  }
  return z;
}

inline double SoftmaxTau(const std::vector<double>& z) {
  const double m = *std::max_element(z.begin(), z.end());
  double s = 0.0;
  for (double x : z) s += std::exp(x - m);
  return m + std::log(s);
}

inline double SparsemaxTauBySort(std::vector<double> z) {
  std::sort(z.begin(), z.end(), std::greater<double>());
  double cs = 0.0, tau = z[0] - 1.0;
  for (size_t k = 1; k <= z.size(); ++k) {
    cs += z[k - 1];
    if (1.0 + k * z[k - 1] > cs) tau = (cs - 1.0) / k;
  }
  return tau;
}

inline double Entmax15TauBySort(std::vector<double> z) {
  std::sort(z.begin(), z.end(), std::greater<double>());
  double cs = 0.0, css = 0.0, tau = z[0] - 1.0;
  for (size_t k = 1; k <= z.size(); ++k) {
    cs += z[k - 1];
    css += z[k - 1] * z[k - 1];
    const double mean = cs / k, ms = css / k, delta = (1.0 - k * (ms - mean * mean)) / k;
    if (delta < 0.0) break;
    const double tk = mean - std::sqrt(delta);
    if (tk <= z[k - 1]) tau = tk;
  }
  return tau;
}

inline double BisectionTau(const std::vector<double>& z, double alpha) {
  const double m = *std::max_element(z.begin(), z.end()), beta = 1.0 / (alpha - 1.0);
  double lo = m - 1.0, hi = m;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    double f = -1.0;
    for (double x : z) f += x > mid ? std::pow(x - mid, beta) : 0.0;
    (f > 0 ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

inline double Weight(double z, double tau, double alpha) {
  if (alpha == 1.0) return std::exp(z - tau);
  const double x = std::max(z - tau, 0.0);
  return alpha == 2.0 ? x : x * x;
}

// Normalised attention output over `tokens` with the given tau.
inline std::vector<double> OracleOut(const EntmaxProblem& pr, int b, int h, const std::vector<int>& tokens,
                                     const std::vector<double>& z, double tau, double alpha) {
  const int D = pr.shape.head_dim, g = h / (pr.shape.heads / pr.shape.kv_heads);
  std::vector<double> o(D, 0.0);
  double mass = 0.0;
  for (size_t j = 0; j < tokens.size(); ++j) {
    const double w = Weight(z[j], tau, alpha);
    mass += w;
    for (int d = 0; d < D; ++d) o[d] += w * pr.V(b, g, tokens[j], d);
  }
  for (double& x : o) x /= mass;
  return o;
}

inline double RelL2(const std::vector<double>& want, const std::vector<float>& got) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace kvstream::testing
