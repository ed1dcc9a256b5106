// CPU twins of K1 sq_quantize_pack and K3 sq_dequant (spectral_quant.md §4.3,
// §7, §9 test 6): K1 -> K3 round trip obeys the midpoint rule at every width,
// codes straddle word boundaries, padding bits stay 0, QJL r_norm / signs
// follow §4.3 step 2 in the raw coordinates.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/spectral_quant/spectral_quant.h"
#include "tests/kernels/spectral_quant/sq_problem.h"

namespace kvstream {
namespace {

using testing::RandomEigen;
using testing::RandomSqPlan;
using testing::SqTables;
using testing::SqTestPlan;

struct Packed {
  std::vector<uint32_t> records;
  std::vector<float> zhat;
};

Packed PackAndDequant(const SqTestPlan& plan, const std::vector<float>& tables, const std::vector<float>& z, int T) {
  const int H = plan.num_kv_heads, D = plan.head_dim;
  Packed out;
  out.records.assign(size_t(T) * H * plan.words, 0xdeadbeefu);  // poison: K1 must write padding too
  SqQuantizePackParams k1;
  k1.z = z.data(), k1.plan = plan.view(), k1.tables = tables.data(), k1.records = out.records.data();
  k1.num_tokens = T, k1.num_kv_heads = H, k1.head_dim = D;
  EXPECT_EQ(SqQuantizePackValidate(k1), nullptr);
  EXPECT_TRUE(SqQuantizePackRef(k1));
  out.zhat.assign(size_t(T) * H * D, NAN);
  SqDequantParams k3;
  k3.records = out.records.data(), k3.plan = plan.view(), k3.tables = tables.data(), k3.zhat = out.zhat.data();
  k3.num_tokens = T, k3.num_kv_heads = H, k3.head_dim = D;
  EXPECT_TRUE(SqDequantRef(k3));
  return out;
}

class SqRoundTrip : public ::testing::TestWithParam<int> {};

TEST_P(SqRoundTrip, CodesObeyMidpointRuleAndPaddingIsZero) {
  const int D = GetParam(), H = 3, T = 97;
  std::mt19937 rng(1234 + D);
  const SqTestPlan plan = RandomSqPlan(H, D, &rng, /*extra_pad_words=*/1);
  const std::vector<float> tables = SqTables();
  const std::vector<float> z = RandomEigen(plan, T, &rng);
  const Packed pk = PackAndDequant(plan, tables, z, T);
  int straddles = 0, widths_seen = 0;
  std::vector<bool> seen(9, false);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < D; ++i) {
      const int off = plan.bit_offset[h * D + i], w = plan.width[h * D + i];
      straddles += (off / 32) != ((off + w - 1) / 32);
      seen[w] = true;
    }
  for (int w = 1; w <= 8; ++w) widths_seen += seen[w];
  ASSERT_GT(straddles, 0) << "the plan must exercise fields across word boundaries";
  ASSERT_EQ(widths_seen, 8) << "the plan must exercise every width";
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      const uint32_t* rec = &pk.records[(size_t(t) * H + h) * plan.words];
      for (int i = 0; i < D; ++i) {
        const int w = plan.width[h * D + i], n = 1 << w;
        const float s = plan.scale[h * D + i];
        const float u = z[(size_t(t) * H + h) * D + i] / s;
        const uint32_t c = SqReadField(rec, plan.bit_offset[h * D + i], w);
        const float* mid = &tables[kSqCentroidFloats + SqMidpointOffset(w)];
        const float* cent = &tables[SqCentroidOffset(w)];
        ASSERT_LT(c, uint32_t(n));
        if (c > 0) {
          EXPECT_LT(mid[c - 1], u) << "t=" << t << " h=" << h << " i=" << i;
        }
        if (c + 1 < uint32_t(n)) {
          EXPECT_LE(u, mid[c]) << "t=" << t << " h=" << h << " i=" << i;
        }
        EXPECT_EQ(pk.zhat[(size_t(t) * H + h) * D + i], s * cent[c]);
      }
      // Every bit past the head's fields, up to W words, is 0.
      for (int b = plan.bits[h]; b < 32 * plan.words; ++b)
        ASSERT_EQ((rec[b / 32] >> (b % 32)) & 1u, 0u) << "padding bit " << b << " of head " << h;
    }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, SqRoundTrip, ::testing::Values(64, 128));

TEST(SqQuantizePack, TiesAndExactMidpointsGoToTheLowerCode) {
  // u exactly on a midpoint: code = #{m < u} picks the lower cell (§4.3 step 1).
  const int D = 64, H = 1;
  std::mt19937 rng(7);
  SqTestPlan plan = RandomSqPlan(H, D, &rng);
  for (int i = 0; i < D; ++i) plan.scale[i] = 1.0f;
  const std::vector<float> tables = SqTables();
  std::vector<float> z(D);
  for (int i = 0; i < D; ++i) {
    const int w = plan.width[i];
    z[i] = w == 1 ? 0.0f : tables[kSqCentroidFloats + SqMidpointOffset(w) + 1];  // midpoint #1 (w >= 2)
  }
  const Packed pk = PackAndDequant(plan, tables, z, 1);
  for (int i = 0; i < D; ++i) {
    const int w = plan.width[i];
    EXPECT_EQ(SqReadField(pk.records.data(), plan.bit_offset[i], w), w == 1 ? 0u : 1u) << "dim " << i << " w " << w;
  }
}

TEST(SqQuantizePack, StridedInputEqualsPacked) {
  const int D = 128, H = 2, T = 5;
  std::mt19937 rng(99);
  const SqTestPlan plan = RandomSqPlan(H, D, &rng);
  const std::vector<float> tables = SqTables();
  const std::vector<float> z = RandomEigen(plan, T, &rng);
  std::vector<float> wide(size_t(T) * (H * D + 17), NAN);
  for (int t = 0; t < T; ++t)
    for (int c = 0; c < H * D; ++c) wide[size_t(t) * (H * D + 17) + c] = z[size_t(t) * H * D + c];
  const Packed ref = PackAndDequant(plan, tables, z, T);
  std::vector<uint32_t> rec(ref.records.size(), 0xffffffffu);
  SqQuantizePackParams k1;
  k1.z = wide.data(), k1.z_stride_t = H * D + 17, k1.plan = plan.view(), k1.tables = tables.data();
  k1.records = rec.data(), k1.num_tokens = T, k1.num_kv_heads = H, k1.head_dim = D;
  ASSERT_TRUE(SqQuantizePackRef(k1));
  EXPECT_EQ(rec, ref.records);
}

// A graph-replayed decode step stores its token at a row held in device
// memory (first_token): the same record lands there and every other row,
// r_norm and sign word is left alone.
TEST(SqQuantizePack, FirstTokenMovesEveryOutputRowAndTouchesNoOther) {
  const int D = 64, H = 2, T = 3, first = 4, cap = 9, SW = D / 32;
  std::mt19937 rng(41);
  const SqTestPlan plan = RandomSqPlan(H, D, &rng);
  const std::vector<float> tables = SqTables();
  const std::vector<float> z = RandomEigen(plan, T, &rng);
  const std::vector<float> sprime = testing::RandomNormal(size_t(H) * D * D, &rng);
  auto pack = [&](int rows, const int32_t* first_token, std::vector<uint32_t>* rec, std::vector<uint16_t>* rn,
                  std::vector<uint32_t>* sg) {
    rec->assign(size_t(rows) * H * plan.words, 0xdeadbeefu);
    rn->assign(size_t(rows) * H, 0xffff);
    sg->assign(size_t(rows) * H * SW, 0xdeadbeefu);
    SqQuantizePackParams k1;
    k1.z = z.data(), k1.plan = plan.view(), k1.tables = tables.data(), k1.records = rec->data();
    k1.s_prime = sprime.data(), k1.r_norm = rn->data(), k1.signs = sg->data(), k1.sign_words = SW;
    k1.num_tokens = T, k1.num_kv_heads = H, k1.head_dim = D, k1.first_token = first_token;
    ASSERT_TRUE(SqQuantizePackRef(k1));
  };
  std::vector<uint32_t> rec0, sg0, rec, sg;
  std::vector<uint16_t> rn0, rn;
  pack(T, nullptr, &rec0, &rn0, &sg0);
  pack(cap, &first, &rec, &rn, &sg);
  for (int r = 0; r < cap; ++r)
    for (int h = 0; h < H; ++h) {
      const bool written = r >= first && r < first + T;
      const size_t at = size_t(r) * H + h, from = size_t(r - first) * H + h;
      for (int w = 0; w < plan.words; ++w)
        ASSERT_EQ(rec[at * plan.words + w], written ? rec0[from * plan.words + w] : 0xdeadbeefu) << "row " << r;
      ASSERT_EQ(rn[at], written ? rn0[from] : uint16_t{0xffff}) << "row " << r;
      for (int w = 0; w < SW; ++w) {
        ASSERT_EQ(sg[at * SW + w], written ? sg0[from * SW + w] : 0xdeadbeefu) << "row " << r;
      }
    }
}

TEST(SqQuantizePack, QjlNormAndSignsFollowTheRawResidual) {
  const int D = 64, H = 2, T = 33;
  std::mt19937 rng(5);
  const SqTestPlan plan = RandomSqPlan(H, D, &rng);
  const std::vector<float> tables = SqTables();
  const std::vector<float> z = RandomEigen(plan, T, &rng);
  // Per head: V_K orthonormal, S_sem Gaussian [D rows used up to d_eff], S' = S_sem V_K.
  std::vector<std::vector<double>> basis(H), ssem(H);
  std::vector<float> sprime(size_t(H) * D * D, 0.0f);
  std::normal_distribution<double> n01(0.0, 1.0);
  for (int h = 0; h < H; ++h) {
    basis[h] = testing::RandomOrthonormal(D, &rng);
    ssem[h].resize(size_t(D) * D);
    for (double& x : ssem[h]) x = n01(rng);
    for (int m = 0; m < D; ++m)
      for (int c = 0; c < D; ++c) {
        double a = 0.0;
        for (int r = 0; r < D; ++r) a += ssem[h][size_t(m) * D + r] * basis[h][size_t(r) * D + c];
        sprime[(size_t(h) * D + m) * D + c] = static_cast<float>(a);
      }
  }
  const int sw = 2;
  std::vector<uint32_t> rec(size_t(T) * H * plan.words), signs(size_t(T) * H * sw, 0xffffffffu);
  std::vector<uint16_t> rn(size_t(T) * H, 0xffff);
  SqQuantizePackParams k1;
  k1.z = z.data(), k1.plan = plan.view(), k1.tables = tables.data(), k1.records = rec.data();
  k1.s_prime = sprime.data(), k1.r_norm = rn.data(), k1.signs = signs.data(), k1.sign_words = sw;
  k1.num_tokens = T, k1.num_kv_heads = H, k1.head_dim = D;
  ASSERT_EQ(SqQuantizePackValidate(k1), nullptr);
  ASSERT_TRUE(SqQuantizePackRef(k1));
  int checked = 0;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      // Raw residual r = V_K (z - z^) (= x - x^).
      std::vector<double> e(D), r(D, 0.0);
      for (int i = 0; i < D; ++i) {
        const int w = plan.width[h * D + i];
        const uint32_t c = SqReadField(&rec[(size_t(t) * H + h) * plan.words], plan.bit_offset[h * D + i], w);
        e[i] = z[(size_t(t) * H + h) * D + i] - plan.scale[h * D + i] * tables[SqCentroidOffset(w) + c];
      }
      double nrm = 0.0;
      for (int row = 0; row < D; ++row) {
        for (int i = 0; i < D; ++i) r[row] += basis[h][size_t(row) * D + i] * e[i];
        nrm += r[row] * r[row];
      }
      nrm = std::sqrt(nrm);
      EXPECT_NEAR(HalfBitsToFloat(rn[size_t(t) * H + h]), nrm, nrm * 1e-3 + 1e-6);
      const uint32_t* sg = &signs[(size_t(t) * H + h) * sw];
      for (int m = 0; m < 64; ++m) {
        const bool bit = (sg[m / 32] >> (m % 32)) & 1u;
        if (m >= plan.d_eff[h]) {
          EXPECT_FALSE(bit) << "unused sign bit " << m << " must be 0";
          continue;
        }
        double a = 0.0;
        for (int i = 0; i < D; ++i) a += ssem[h][size_t(m) * D + i] * r[i];
        if (std::fabs(a) < 1e-4 * nrm) continue;  // rounding may decide a near-zero sign
        EXPECT_EQ(bit, a >= 0.0) << "t=" << t << " h=" << h << " m=" << m;
        ++checked;
      }
    }
  EXPECT_GT(checked, T * H);
}

TEST(SqQuantizePack, RejectsHalfQjlAndBadHeadDim) {
  SqQuantizePackParams p;
  p.head_dim = 96, p.num_kv_heads = 1;
  EXPECT_NE(SqQuantizePackValidate(p), nullptr);
  std::mt19937 rng(1);
  const SqTestPlan plan = RandomSqPlan(1, 64, &rng);
  uint16_t rn = 0;
  p.head_dim = 64, p.plan = plan.view(), p.r_norm = &rn;
  EXPECT_NE(SqQuantizePackValidate(p), nullptr);
  EXPECT_FALSE(SqQuantizePackRef(p));
}

}  // namespace
}  // namespace kvstream
