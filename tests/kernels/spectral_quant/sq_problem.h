// Random SpectralQuant problems shared by the CPU and CUDA kernel tests: a
// plan per (KV head) with every width 1..8 somewhere and fields straddling
// word boundaries, unit tables, eigen coordinates at the plan's scales, and
// orthonormal bases for the tests that go through the raw coordinates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/spectral_quant/spectral_quant.h"

namespace kvstream::testing {

// Host copy of one layer's plan of one type; view() points into it.
struct SqTestPlan {
  int head_dim = 0, num_kv_heads = 0;
  std::vector<uint8_t> width;        // [Hkv, D]
  std::vector<float> scale;          // [Hkv, D]
  std::vector<uint16_t> bit_offset;  // [Hkv, D]
  std::vector<int32_t> d_eff;        // [Hkv]
  std::vector<int> bits;             // [Hkv] total bits of each head's fields
  int words = 0;
  SqPlanView view() const {
    SqPlanView v;
    v.width = width.data(), v.scale = scale.data(), v.bit_offset = bit_offset.data();
    v.d_eff = d_eff.data(), v.words = words;
    return v;
  }
};

// Semantic dims (i < d_eff) get widths cycling through 1..8 from a random
// start, the tail one width in 1..4 per head; scales log-uniform over
// [0.05, 5]; `extra_pad_words` adds padding words past the widest head.
inline SqTestPlan RandomSqPlan(int Hkv, int D, std::mt19937* rng, int extra_pad_words = 0) {
  SqTestPlan p;
  p.head_dim = D, p.num_kv_heads = Hkv;
  p.width.resize(size_t(Hkv) * D), p.scale.resize(size_t(Hkv) * D), p.bit_offset.resize(size_t(Hkv) * D);
  p.d_eff.resize(Hkv), p.bits.resize(Hkv);
  std::uniform_int_distribution<int> deff(2, std::min(D - 2, 40)), tail(1, 4), start(0, 7);
  std::uniform_real_distribution<float> lsig(std::log(0.05f), std::log(5.0f));
  int max_bits = 0;
  for (int h = 0; h < Hkv; ++h) {
    const int de = deff(*rng), tw = tail(*rng), s0 = start(*rng);
    p.d_eff[h] = de;
    for (int i = 0; i < D; ++i) {
      p.width[h * D + i] = static_cast<uint8_t>(i < de ? 1 + (s0 + i) % 8 : tw);
      p.scale[h * D + i] = std::exp(lsig(*rng));
    }
    p.bits[h] = SqPackBitOffsets(&p.width[h * D], D, &p.bit_offset[h * D]);
    max_bits = std::max(max_bits, p.bits[h]);
  }
  p.words = SqRecordWords(max_bits) + extra_pad_words;
  return p;
}

// The kernels' table buffer.
inline std::vector<float> SqTables() {
  std::vector<float> t(kSqTableFloats);
  SqBuildUnitTables(t.data());
  return t;
}

// Z [T, Hkv, D]: z_i = s_i * N(0, 1) * 1.2 (a few values beyond the outer cells).
inline std::vector<float> RandomEigen(const SqTestPlan& p, int T, std::mt19937* rng) {
  std::normal_distribution<float> n01(0.0f, 1.0f);
  const int H = p.num_kv_heads, D = p.head_dim;
  std::vector<float> z(size_t(T) * H * D);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < D; ++i) z[(size_t(t) * H + h) * D + i] = p.scale[h * D + i] * 1.2f * n01(*rng);
  return z;
}

inline std::vector<float> RandomNormal(size_t n, std::mt19937* rng, float sigma = 1.0f) {
  std::normal_distribution<float> n01(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = n01(*rng);
  return v;
}

// A random D x D orthonormal matrix, row-major, column i = basis vector i
// (Gram–Schmidt in double on a Gaussian matrix).
inline std::vector<double> RandomOrthonormal(int D, std::mt19937* rng) {
  std::normal_distribution<double> n01(0.0, 1.0);
  std::vector<double> cols(size_t(D) * D);  // cols[i*D + r] = column i
  for (double& x : cols) x = n01(*rng);
  for (int i = 0; i < D; ++i) {
    double* c = &cols[size_t(i) * D];
    for (int j = 0; j < i; ++j) {
      const double* b = &cols[size_t(j) * D];
      double d = 0.0;
      for (int r = 0; r < D; ++r) d += c[r] * b[r];
      for (int r = 0; r < D; ++r) c[r] -= d * b[r];
    }
    double nrm = 0.0;
    for (int r = 0; r < D; ++r) nrm += c[r] * c[r];
    nrm = std::sqrt(nrm);
    for (int r = 0; r < D; ++r) c[r] /= nrm;
  }
  std::vector<double> m(size_t(D) * D);
  for (int i = 0; i < D; ++i)
    for (int r = 0; r < D; ++r) m[size_t(r) * D + i] = cols[size_t(i) * D + r];
  return m;
}

// ||got - want|| / ||want|| (0 when both are 0); NaN anywhere gives +inf.
inline double SqRelErr(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(want[i])) return INFINITY;
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += double(want[i]) * want[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace kvstream::testing
