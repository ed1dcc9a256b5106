// CPU twins of the SAM-Gate probe kernels (sam_gate.md §4 prefill step 2,
// C5, §9 test 3): Rademacher determinism, causal row-stochastic operators,
// identity and equal operators, the 3x3 closed form, Hutchinson converging to
// the exact commutator norm, and pair values independent of other heads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/sam_gate/sam_probe.h"

namespace kvstream {
namespace {

struct Probe {
  std::vector<float> z, u, e, w, f;
};

// Hutchinson e and F of operators a [H, P, P] with seed/layer and K probes.
Probe Hutchinson(const std::vector<float>& a, int H, int P, int K, uint64_t seed, int layer = 0) {
  Probe r;
  r.z.assign(size_t(P) * K, NAN);
  r.u.assign(size_t(H) * P * K, NAN);
  r.e.assign(H, NAN);
  r.w.assign(size_t(H) * H * P * K, NAN);
  r.f.assign(size_t(H) * H, NAN);
  SamRademacherParams zp{r.z.data(), seed, layer, P, K};
  EXPECT_TRUE(SamRademacherRef(zp));
  SamProbeProductsParams pp{a.data(), r.z.data(), r.u.data(), r.e.data(), r.w.data(), H, P, K};
  EXPECT_TRUE(SamProbeProductsRef(pp));
  SamProbePairsParams fp{r.w.data(), r.f.data(), H, P, K};
  EXPECT_TRUE(SamProbePairsRef(fp));
  return r;
}

Probe Exact(const std::vector<float>& a, int H, int P) {
  Probe r;
  r.e.assign(H, NAN);
  r.f.assign(size_t(H) * H, NAN);
  SamProbeExactParams p{a.data(), r.f.data(), r.e.data(), H, P};
  EXPECT_TRUE(SamProbeExactRef(p));
  return r;
}

// P x P identity with the 3x3 block m in its top-left corner.
void Embed3(const double m[3][3], int P, float* a) {
  for (int r = 0; r < P; ++r) {
    for (int c = 0; c < P; ++c) a[r * P + c] = (r < 3 && c < 3) ? static_cast<float>(m[r][c]) : (r == c ? 1.0f : 0.0f);
  }
}

constexpr double kM1[3][3] = {{1, 0, 0}, {0.5, 0.5, 0}, {0.2, 0.3, 0.5}};
constexpr double kM2[3][3] = {{1, 0, 0}, {0.1, 0.9, 0}, {0.6, 0.2, 0.2}};

TEST(SamProbe, RademacherIsDeterministicFromSeedAndLayer) {
  // splitmix64 of 0 is the well-known first output of a zero-seeded splitmix64.
  EXPECT_EQ(SamSplitMix64(0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(SamRademacher(0, 0, 0, 0), -1.0f);  // top bit set
  const int P = 64, K = 8;
  const Probe a = Hutchinson(std::vector<float>(P * P, 0.0f), 1, P, K, 42, 3);
  const Probe b = Hutchinson(std::vector<float>(P * P, 0.0f), 1, P, K, 42, 3);
  const Probe c = Hutchinson(std::vector<float>(P * P, 0.0f), 1, P, K, 42, 4);
  const Probe d = Hutchinson(std::vector<float>(P * P, 0.0f), 1, P, K, 43, 3);
  EXPECT_EQ(a.z, b.z);
  EXPECT_NE(a.z, c.z) << "layer enters the key";
  EXPECT_NE(a.z, d.z) << "seed enters the key";
  int plus = 0;
  for (int r = 0; r < P; ++r) {
    for (int k = 0; k < K; ++k) {
      const float v = a.z[r * K + k];
      ASSERT_TRUE(v == 1.0f || v == -1.0f);
      const uint64_t key = (uint64_t(3) << 48) | (uint64_t(k) << 32) | uint64_t(r);
      ASSERT_EQ(v, (SamSplitMix64(42 ^ key) >> 63) ? -1.0f : 1.0f) << "C5 layout: z[r, k]";
      plus += v > 0;
    }
  }
  EXPECT_GT(plus, P * K / 2 - 64);
  EXPECT_LT(plus, P * K / 2 + 64);
}

TEST(SamProbe, SoftmaxRowsAreCausalAndStochasticWithStridedStaging) {
  std::mt19937 rng(21);
  const int H = 6, Hk = 2, P = 24, D = 64, T = 40, w = T - P;
  // Staging layout [T, H, D] / [T, Hk, D] in bf16, the probe reads its last P rows.
  std::vector<uint16_t> q(size_t(T) * H * D), k(size_t(T) * Hk * D);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& x : q) x = FloatToBf16Bits(nd(rng));
  for (auto& x : k) x = FloatToBf16Bits(nd(rng));
  std::vector<float> a(size_t(H) * P * P, NAN);
  SamProbeSoftmaxParams p;
  p.q = q.data() + size_t(w) * H * D, p.k = k.data() + size_t(w) * Hk * D, p.a = a.data();
  p.q_stride_h = D, p.q_stride_p = int64_t(H) * D, p.k_stride_h = D, p.k_stride_p = int64_t(Hk) * D;
  p.num_heads = H, p.num_kv_heads = Hk, p.head_dim = D, p.window = P, p.scale = 0.125f, p.dtype = KvDType::kBf16;
  ASSERT_TRUE(SamProbeSoftmaxRef(p)) << SamProbeSoftmaxValidate(p);
  for (int h = 0; h < H; ++h) {
    for (int r = 0; r < P; ++r) {
      double sum = 0.0;
      for (int c = 0; c < P; ++c) {
        const float v = a[(size_t(h) * P + r) * P + c];
        if (c > r) ASSERT_EQ(v, 0.0f);
        sum += v;
      }
      ASSERT_NEAR(sum, 1.0, 1e-6);
    }
    // Row 0 attends only to itself.
    EXPECT_EQ(a[size_t(h) * P * P], 1.0f);
  }
  // Entry (h=4, r=5, c=2) from the definition (h=4 reads KV head 4 / 3 = 1).
  const int h = 4, r = 5, g = 1;
  std::vector<double> z(r + 1);
  double mx = -INFINITY, l = 0.0;
  for (int c = 0; c <= r; ++c) {
    double dot = 0.0;
    for (int d = 0; d < D; ++d)
      dot += double(Bf16BitsToFloat(q[(size_t(w + r) * H + h) * D + d])) * Bf16BitsToFloat(k[(size_t(w + c) * Hk + g) * D + d]);
    z[c] = 0.125 * dot;
    mx = std::max(mx, z[c]);
  }
  for (int c = 0; c <= r; ++c) l += std::exp(z[c] - mx);
  EXPECT_NEAR(a[(size_t(h) * P + r) * P + 2], std::exp(z[2] - mx) / l, 1e-7);
}

TEST(SamProbe, IdentityOperatorsGiveZeroEnergyAndCurvature) {
  const int H = 4, P = 16;
  std::vector<float> a(size_t(H) * P * P, 0.0f);
  for (int h = 0; h < H; ++h) {
    for (int r = 0; r < P; ++r) a[(size_t(h) * P + r) * P + r] = 1.0f;
  }
  const Probe hut = Hutchinson(a, H, P, 8, 7), ex = Exact(a, H, P);
  for (int h = 0; h < H; ++h) {
    EXPECT_EQ(hut.e[h], 0.0f);
    EXPECT_EQ(ex.e[h], 0.0f);
  }
  for (int i = 0; i < H * H; ++i) {
    EXPECT_EQ(hut.f[i], 0.0f);
    EXPECT_EQ(ex.f[i], 0.0f);
  }
}

TEST(SamProbe, EqualOperatorsCommuteExactlyForAnySeed) {
  std::mt19937 rng(22);
  const int H = 3, P = 12;
  std::vector<float> one(size_t(P) * P, 0.0f), a;
  for (int r = 0; r < P; ++r) {
    float sum = 0.0f;
    for (int c = 0; c <= r; ++c) sum += (one[r * P + c] = std::uniform_real_distribution<float>(0.1f, 1.0f)(rng));
    for (int c = 0; c <= r; ++c) one[r * P + c] /= sum;
  }
  for (int h = 0; h < H; ++h) a.insert(a.end(), one.begin(), one.end());
  for (uint64_t seed : {0ull, 1ull, 99ull, 0xFFFFFFFFFFFFFFFFull}) {
    const Probe hut = Hutchinson(a, H, P, 5, seed);
    for (float f : hut.f) ASSERT_EQ(f, 0.0f) << "seed " << seed;
  }
  for (float f : Exact(a, H, P).f) EXPECT_EQ(f, 0.0f);
}

TEST(SamProbe, ExactMatchesTheClosedFormOf3x3Operators) {
  const int H = 2, P = 8;
  std::vector<float> a(size_t(H) * P * P);
  Embed3(kM1, P, a.data());
  Embed3(kM2, P, a.data() + P * P);
  const Probe ex = Exact(a, H, P);
  // [M1, M2] has one non-zero row: (-0.21, 0.21, 0) -> ||.||^2 = 441/5000.
  EXPECT_NEAR(ex.f[0 * H + 1], 441.0 / 5000.0, 1e-6);
  EXPECT_EQ(ex.f[1 * H + 0], 0.0f);
  EXPECT_EQ(ex.f[0], 0.0f);
  // ||M1 - I||^2 = 0.88, ||M2 - I||^2 = 0.01 + 0.01 + 0.36 + 0.04 + 0.64 = 1.06.
  EXPECT_NEAR(ex.e[0], 0.88 / P, 1e-7);
  EXPECT_NEAR(ex.e[1], 1.06 / P, 1e-7);
}

TEST(SamProbe, HutchinsonMeanConvergesToExactCommutator) {
  const int H = 2, P = 8;
  std::vector<float> a(size_t(H) * P * P);
  Embed3(kM1, P, a.data());
  Embed3(kM2, P, a.data() + P * P);
  const Probe ex = Exact(a, H, P);
  // §9 test 3: the mean over 2000 seeds is within 3% (K = 8).
  double f_mean = 0.0, e_mean = 0.0;
  const int kSeeds = 2000;
  for (int s = 0; s < kSeeds; ++s) {
    const Probe hut = Hutchinson(a, H, P, 8, 1000 + s);
    f_mean += hut.f[1] / kSeeds;
    e_mean += hut.e[0] / kSeeds;
  }
  EXPECT_NEAR(f_mean, ex.f[1], 0.03 * ex.f[1]);
  EXPECT_NEAR(e_mean, ex.e[0], 0.03 * ex.e[0]);
  // One estimate's spread shrinks as K grows (root mean square error over 200 seeds).
  double rms_prev = INFINITY;
  for (int K : {1, 8, 64}) {
    double se = 0.0;
    for (int s = 0; s < 200; ++s) se += std::pow(Hutchinson(a, H, P, K, 5000 + s).f[1] - ex.f[1], 2);
    const double rms = std::sqrt(se / 200);
    EXPECT_LT(rms, rms_prev) << "K=" << K;
    rms_prev = rms;
  }
  EXPECT_LT(rms_prev, 0.3 * ex.f[1]);
}

TEST(SamProbe, PairValueIgnoresOtherHeads) {
  // Adding a near-identity (harmonic) head leaves F of the other pair as is,
  // so excluding a head with e_h < tau removes exactly its own pairs from f.
  const int P = 8;
  std::vector<float> two(size_t(2) * P * P), three(size_t(3) * P * P, 0.0f);
  Embed3(kM1, P, two.data());
  Embed3(kM2, P, two.data() + P * P);
  std::copy(two.begin(), two.end(), three.begin());
  for (int r = 0; r < P; ++r) three[size_t(2) * P * P + r * P + r] = 1.0f;
  const Probe h2 = Hutchinson(two, 2, P, 8, 77), h3 = Hutchinson(three, 3, P, 8, 77);
  EXPECT_EQ(h2.f[0 * 2 + 1], h3.f[0 * 3 + 1]);
  EXPECT_EQ(h3.e[2], 0.0f);
}

TEST(SamProbe, WorkspaceAndValidation) {
  // §3: A + U + W for H=32, P=64, K=8 is about 2.6 MiB (plus Z, e, F).
  const size_t bytes = SamProbeWorkspaceBytes(32, 64, 8);
  EXPECT_EQ(bytes, size_t(4) * (32 * 64 * 64 + 32 + 32 * 32 + 64 * 8 + 32 * 64 * 8 + 32 * 32 * 64 * 8));
  EXPECT_LT(bytes, size_t(3) << 20);
  SamProbeExactParams p;
  std::vector<float> buf(16);
  p.a = p.f = p.e = buf.data();
  p.num_heads = 2, p.window = 4;
  EXPECT_STREQ(SamProbeExactValidate(p), "window (P) must be in [8, 512]");
}

}  // namespace
}  // namespace kvstream
