// Unit Lloyd–Max tables (spectral_quant.md §4.2 step 5): the seed's
// iteration with the closed-form conditional mean instead of scipy `quad`.
#include "kernels/spectral_quant/sq_tables.h"

#include <algorithm>
#include <cmath>

namespace kvstream {
namespace {

constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kOuterEdge = 10.5;  // the seed's outer boundaries (±10.5 s)
constexpr int kMaxIter = 50;
constexpr double kTol = 1e-6;

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double Pdf(double x) { return std::isinf(x) ? 0.0 : kInvSqrt2Pi * std::exp(-0.5 * x * x); }

}  // namespace

void SqLloydMaxUnit(int w, double* c) {
  const int n = 1 << w;
  for (int i = 0; i < n; ++i) c[i] = -3.5 + 7.0 * (i + 0.5) / n;
  double next[1 << kSqMaxWidth];
  for (int it = 0; it < kMaxIter; ++it) {
    double diff = 0.0;
    for (int i = 0; i < n; ++i) {
      const double a = i == 0 ? -kOuterEdge : 0.5 * (c[i - 1] + c[i]);
      const double b = i == n - 1 ? kOuterEdge : 0.5 * (c[i] + c[i + 1]);
      const double mass = Phi(b) - Phi(a);
      // E[x | a < x < b] for N(0, 1); an empty cell keeps its centroid.
      next[i] = mass > 0.0 ? (Pdf(a) - Pdf(b)) / mass : c[i];
      diff = std::max(diff, std::fabs(next[i] - c[i]));
    }
    if (diff < kTol) break;  // the seed keeps the previous iterate
    std::copy(next, next + n, c);
  }
}

void SqBuildUnitTables(float* tables) {
  double c[1 << kSqMaxWidth];
  for (int w = kSqMinWidth; w <= kSqMaxWidth; ++w) {
    const int n = 1 << w;
    SqLloydMaxUnit(w, c);
    float* cent = tables + SqCentroidOffset(w);
    float* mid = tables + kSqCentroidFloats + SqMidpointOffset(w);
    for (int i = 0; i < n; ++i) cent[i] = static_cast<float>(c[i]);
    for (int i = 0; i + 1 < n; ++i) mid[i] = static_cast<float>(0.5 * (c[i] + c[i + 1]));
  }
}

double SqUnitCodebookMse(const double* c, int w) {
  const int n = 1 << w;
  double mse = 0.0;
  for (int i = 0; i < n; ++i) {
    const double a = i == 0 ? -INFINITY : 0.5 * (c[i - 1] + c[i]);
    const double b = i == n - 1 ? INFINITY : 0.5 * (c[i] + c[i + 1]);
    const double mass = Phi(b) - Phi(a);
    const double m1 = Pdf(a) - Pdf(b);                                         // int x phi
    const double m2 = mass + (std::isinf(a) ? 0.0 : a * Pdf(a)) - (std::isinf(b) ? 0.0 : b * Pdf(b));  // int x^2 phi
    mse += m2 - 2.0 * c[i] * m1 + c[i] * c[i] * mass;
  }
  return mse;
}

}  // namespace kvstream
