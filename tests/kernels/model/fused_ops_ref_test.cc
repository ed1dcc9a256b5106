// CPU twins of the fused Llama-block ops against direct fp64 evaluation of
// the formulas they stand for (fresh random inputs, NaN-poisoned outputs).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/model/fused_ops.h"

namespace kvstream {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

double MaxRelError(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err = std::max(err, std::abs(got[i] - want[i]));
    norm = std::max(norm, std::abs(want[i]));
  }
  return err / norm;
}

TEST(RmsNormRef, Fp32WithResidualEqualsFormula) {
  const int N = 5, E = 96;
  std::vector<float> x = Random(N * E, 1), res = Random(N * E, 2), w = Random(E, 3);
  std::vector<float> res0 = res, out(N * E, std::numeric_limits<float>::quiet_NaN());
  RmsNormParams p{x.data(), res.data(), w.data(), out.data(), 0, N, E, 1e-5f, KvDType::kFp32};
  ASSERT_TRUE(RmsNormRef(p));
  std::vector<double> want(N * E);
  for (int r = 0; r < N; ++r) {
    double ss = 0;
    for (int e = 0; e < E; ++e) ss += std::pow(double(res0[r * E + e]) + x[r * E + e], 2);
    const double inv = 1 / std::sqrt(ss / E + 1e-5);
    for (int e = 0; e < E; ++e) {
      EXPECT_FLOAT_EQ(res[r * E + e], res0[r * E + e] + x[r * E + e]);
      want[r * E + e] = w[e] * (double(res0[r * E + e]) + x[r * E + e]) * inv;
    }
  }
  EXPECT_LT(MaxRelError(out, want), 1e-5);
}

TEST(RmsNormRef, RejectsBadShapesNamingTheField) {
  float a[8] = {};
  RmsNormParams p{a, nullptr, a, a, 0, 1, 12, 1e-5f, KvDType::kFp32};
  EXPECT_STREQ(RmsNormValidate(p), "hidden must be a positive multiple of 8");
  EXPECT_FALSE(RmsNormRef(p));
}

TEST(SiluMulRef, Bf16RoundsLikeTheAtenComposition) {
  const int N = 3, I = 64;
  std::vector<float> gu = Random(N * 2 * I, 4, 2.f);
  std::vector<uint16_t> gu_b(gu.size()), out(N * I, 0x7fc0);
  for (size_t i = 0; i < gu.size(); ++i) gu_b[i] = FloatToBf16Bits(gu[i]);
  SiluMulParams p{gu_b.data(), out.data(), N, I, KvDType::kBf16};
  ASSERT_TRUE(SiluMulRef(p));
  for (int r = 0; r < N; ++r) {
    for (int i = 0; i < I; ++i) {
      const float g = Bf16BitsToFloat(gu_b[r * 2 * I + i]), u = Bf16BitsToFloat(gu_b[r * 2 * I + I + i]);
      const float a = Bf16BitsToFloat(FloatToBf16Bits(g / (1 + std::exp(-g))));
      EXPECT_EQ(out[r * I + i], FloatToBf16Bits(a * u)) << r << "," << i;
    }
  }
}

TEST(RopeRef, Fp32RotatesQAndKHeadsAndLeavesV) {
  const int N = 4, H = 3, Hkv = 1, D = 16;
  const int W = (H + 2 * Hkv) * D;
  std::vector<float> qkv = Random(N * W, 5), orig = qkv, inv(D / 2);
  for (int i = 0; i < D / 2; ++i) inv[i] = std::pow(10000.f, -2.f * i / D);
  std::vector<int64_t> pos = {0, 7, 100, 4095};
  RopeParams p{qkv.data(), pos.data(), inv.data(), 0, N, H, Hkv, D, KvDType::kFp32};
  ASSERT_TRUE(RopeRef(p));
  for (int r = 0; r < N; ++r) {
    for (int h = 0; h < H + 2 * Hkv; ++h) {
      for (int i = 0; i < D / 2; ++i) {
        const int o = r * W + h * D;
        if (h >= H + Hkv) {  // v untouched
          EXPECT_EQ(qkv[o + i], orig[o + i]);
          continue;
        }
        const double f = double(float(pos[r]) * inv[i]);
        const double x1 = orig[o + i], x2 = orig[o + D / 2 + i];
        EXPECT_NEAR(qkv[o + i], x1 * std::cos(f) - x2 * std::sin(f), 2e-5);
        EXPECT_NEAR(qkv[o + D / 2 + i], x2 * std::cos(f) + x1 * std::sin(f), 2e-5);
      }
    }
  }
}

}  // namespace
}  // namespace kvstream
