// CPU twins of the LASER-KV LSH kernels (laser_kv.md §4.3 step 5, §6.7, §6.8,
// §9 test 7): strict sign bits packed t*K+k, hand-built collision counts,
// upstream's magicpig case, best matches, U(p) values and the R generator.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "tests/kernels/laser_kv/laser_test_util.h"

namespace kvstream {
namespace {

// R with R[c, col] = 1 where c == col (so proj[col] = x[col] - mu[col]).
std::vector<float> IdentityProjection(int D, int LK) {
  std::vector<float> r(size_t(D) * LK, 0.0f);
  for (int c = 0; c < std::min(D, LK); ++c) r[size_t(c) * LK + c] = 1.0f;
  return r;
}

TEST(LaserLshHashRef, StrictSignBitsPackedTableMajor) {
  const int D = 64, L = 2, K = 3, LK = 6;
  const std::vector<float> r = IdentityProjection(D, LK);
  // Row 0: projections +, 0, -, +, +, 0  -> bits 1,0,0,1,1,0 (0 is not > 0).
  std::vector<float> v(2 * D, 0.0f);
  const float row0[6] = {0.5f, 0.0f, -1.0f, 2.0f, 1e-30f, -0.0f};
  for (int c = 0; c < 6; ++c) v[c] = row0[c];
  // Row 1: all projections positive after centring by mu = -1.
  std::vector<float> mu(D, 0.0f);
  std::vector<int32_t> codes(2 * L, -1);
  std::vector<uint64_t> bits(2, ~0ull);
  LaserLshHashParams p;
  p.v = v.data(), p.r = r.data(), p.codes = codes.data(), p.bits = bits.data();
  p.num_rows = 2, p.head_dim = D, p.num_tables = L, p.num_bits = K;
  ASSERT_TRUE(LaserLshHashRef(p));
  EXPECT_EQ(codes[0], 0b001);  // table 0: bits (k=0..2) = 1, 0, 0
  EXPECT_EQ(codes[1], 0b011);  // table 1: bits = 1, 1, 0
  EXPECT_EQ(bits[0], 0b011001ull);
  EXPECT_EQ(codes[2], 0);
  EXPECT_EQ(bits[1], 0ull);
  for (float& m : mu) m = -1.0f;
  p.mu = mu.data();
  ASSERT_TRUE(LaserLshHashRef(p));
  EXPECT_EQ(codes[2], 0b111);
  EXPECT_EQ(codes[3], 0b111);
  EXPECT_EQ(bits[1], 0b111111ull);
}

TEST(LaserLshHashRef, WordsBeyondSixtyFourBits) {
  const int D = 128, L = 20, K = 6, LK = 120;  // 2 words, bit 119 is the last
  const std::vector<float> r = IdentityProjection(D, LK);
  std::vector<float> v(D, -1.0f);
  v[0] = v[63] = v[64] = v[119] = 1.0f;
  std::vector<int32_t> codes(L);
  std::vector<uint64_t> bits(2);
  LaserLshHashParams p;
  p.v = v.data(), p.r = r.data(), p.codes = codes.data(), p.bits = bits.data();
  p.num_rows = 1, p.head_dim = D, p.num_tables = L, p.num_bits = K;
  ASSERT_TRUE(LaserLshHashRef(p));
  EXPECT_EQ(bits[0], 1ull | (1ull << 63));
  EXPECT_EQ(bits[1], 1ull | (1ull << (119 - 64)));
  EXPECT_EQ(codes[0], 1);                 // col 0 = table 0 bit 0
  EXPECT_EQ(codes[19], 1 << 5);           // col 119 = 19*6 + 5
  EXPECT_EQ(codes[64 / 6], (1 << 3) | (1 << (64 % 6)));  // cols 63 = 10*6+3 and 64 = 10*6+4
}

TEST(LaserCollisionCountRef, HandBuiltCodes) {
  const int L = 3, K = 4;
  // Query codes (2 tokens): table 0 {1, 2}, table 1 {5, 5}, table 2 {0, 15}.
  const std::vector<int32_t> qc = {1, 5, 0, 2, 5, 15};
  const std::vector<int32_t> cc = {
      1, 5, 15,  // all 3 tables (table 2 matches token 1 only)
      2, 4, 0,   // tables 0, 2
      3, 6, 7,   // none
      1, 5, 14,  // tables 0, 1
  };
  std::vector<uint8_t> counts(4, 0xEE);
  LaserCollisionCountParams p;
  p.query_codes = qc.data(), p.cand_codes = cc.data(), p.counts = counts.data();
  p.num_query = 2, p.num_cand = 4, p.num_tables = L, p.num_bits = K;
  ASSERT_TRUE(LaserCollisionCountRef(p));
  EXPECT_EQ(counts, (std::vector<uint8_t>{3, 2, 0, 2}));
}

// Upstream's magicpig case (DistInf tests/test_lsh_magicpig.py): query bits
// all 0; C1 equal in every table, C2 in two, C3 in one. Survivors (c >= 2)
// are {C1, C2}, C1 has the best match; C3 is reachable only through the
// fallback (engine).
TEST(LaserMagicpigRef, UpstreamCase) {
  const int L = 4, K = 3, W = 1;
  const std::vector<int32_t> qc(L, 0);
  const std::vector<int32_t> cc = {0, 0, 0, 0, /*C2*/ 0, 0, 7, 7, /*C3*/ 0, 1, 3, 7};
  std::vector<uint8_t> counts(3);
  LaserCollisionCountParams cp;
  cp.query_codes = qc.data(), cp.cand_codes = cc.data(), cp.counts = counts.data();
  cp.num_query = 1, cp.num_cand = 3, cp.num_tables = L, cp.num_bits = K;
  ASSERT_TRUE(LaserCollisionCountRef(cp));
  EXPECT_EQ(counts, (std::vector<uint8_t>{4, 2, 1}));
  // Bits packed as t*K + k from the codes.
  std::vector<uint64_t> cb(3 * W, 0), qb(W, 0);
  for (int j = 0; j < 3; ++j)
    for (int t = 0; t < L; ++t) cb[j] |= uint64_t(cc[j * L + t]) << (t * K);
  const std::vector<int32_t> survivors = {0, 1};
  std::vector<uint16_t> best(2, 0xFFFF);
  LaserBestMatchParams bp;
  bp.query_bits = qb.data(), bp.cand_bits = cb.data(), bp.rows = survivors.data(), bp.best = best.data();
  bp.num_query = 1, bp.num_rows = 2, bp.num_tables = L, bp.num_bits = K;
  ASSERT_TRUE(LaserBestMatchRef(bp));
  EXPECT_EQ(best[0], 12);
  EXPECT_EQ(best[1], 12 - 6);
  EXPECT_DOUBLE_EQ(LaserMagicpigU(best[0] / 12.0, K, L), 1.0);
  // Budget 2 over the survivors: both, C1 first by key.
  const std::vector<int32_t> pos = {10, 20};
  std::vector<uint64_t> keys(2);
  LaserMakeKeysParams kp;
  kp.mode = LaserKeyMode::kMagicpig, kp.best = best.data(), kp.pos = pos.data(), kp.keys = keys.data(), kp.num = 2;
  ASSERT_TRUE(LaserMakeKeysRef(kp));
  EXPECT_GT(keys[0], keys[1]);
  std::vector<int32_t> out(1, -1);
  LaserSelectTopkParams sp;
  sp.keys = keys.data(), sp.out = out.data(), sp.num = 2, sp.k = 1;
  ASSERT_TRUE(LaserSelectTopkRef(sp));
  EXPECT_EQ(out[0], 0);
}

TEST(LaserBestMatchRef, MaxOverQueryTokens) {
  const int L = 20, K = 12, W = 4;  // LK = 240
  std::vector<uint64_t> q(2 * W, 0), c(W, 0);
  for (int w = 0; w < W; ++w) q[W + w] = (w < 3) ? ~0ull : 0xFFFFFFFFFFFFull;  // token 1: all 240 bits set
  c[0] = 0xFF;  // 8 bits set
  std::vector<uint16_t> best(1);
  LaserBestMatchParams p;
  p.query_bits = q.data(), p.cand_bits = c.data(), p.best = best.data();
  p.num_query = 2, p.num_rows = 1, p.num_tables = L, p.num_bits = K;
  ASSERT_TRUE(LaserBestMatchRef(p));
  EXPECT_EQ(best[0], 240 - 8);  // token 0 (all zero) differs in 8 bits; token 1 in 232
}

TEST(LaserMagicpigU, SpecValues) {
  EXPECT_EQ(LaserMagicpigU(0.0, 10, 8), 0.0);
  EXPECT_EQ(LaserMagicpigU(1.0, 10, 8), 1.0);
  EXPECT_NEAR(LaserMagicpigU(0.9, 6, 4), 0.733119, 6e-7);
  EXPECT_NEAR(LaserMagicpigU(0.9, 10, 8), 0.828911, 6e-7);
  EXPECT_NEAR(LaserMagicpigU(0.9, 12, 20), 0.988377, 6e-7);
  double prev = 0.0;
  for (int i = 0; i <= 100; ++i) {  // non-decreasing in p for L >= 2 (§6.8)
    const double u = LaserMagicpigU(i / 100.0, 10, 8);
    EXPECT_GE(u, prev - 1e-15);
    prev = u;
  }
}

TEST(LaserMakeProjection, DeterministicStandardNormal) {
  EXPECT_EQ(LaserSplitMix64(0), 0xE220A8397B1DCDAFull);  // first output of a zero-seeded splitmix64
  const int D = 128, L = 20, K = 12, n = D * L * K;
  std::vector<float> a(n), b(n), c(n);
  ASSERT_TRUE(LaserMakeProjection(0x4C41534552ull, D, L, K, a.data()));
  ASSERT_TRUE(LaserMakeProjection(0x4C41534552ull, D, L, K, b.data()));
  ASSERT_TRUE(LaserMakeProjection(1, D, L, K, c.data()));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  double s = 0, s2 = 0, pos = 0;
  for (float x : a) {
    ASSERT_TRUE(std::isfinite(x));
    s += x, s2 += double(x) * x, pos += x > 0;
  }
  EXPECT_NEAR(s / n, 0.0, 0.02);
  EXPECT_NEAR(s2 / n, 1.0, 0.03);
  EXPECT_NEAR(pos / n, 0.5, 0.01);
  // Element 0 and 1 from the documented recipe (laser_lsh.h).
  const uint64_t s0 = LaserSplitMix64(7), s1 = LaserSplitMix64(7 + 0x9E3779B97F4A7C15ull);
  const double u1 = double((s0 >> 11) + 1) * 0x1.0p-53, u2 = double(s1 >> 11) * 0x1.0p-53;
  std::vector<float> r(64 * 2 * 1);
  ASSERT_TRUE(LaserMakeProjection(7, 64, 2, 1, r.data()));
  EXPECT_EQ(r[0], float(std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2)));
  EXPECT_EQ(r[1], float(std::sqrt(-2 * std::log(u1)) * std::sin(2 * M_PI * u2)));
  EXPECT_FALSE(LaserMakeProjection(7, 64, 129, 1, r.data()));
  EXPECT_FALSE(LaserMakeProjection(7, 64, 64, 17, r.data()));
}

TEST(LaserColumnMeanRef, MeanOfRows) {
  const int D = 64, N = 3;
  std::vector<float> v(N * D), mu(D, NAN);
  for (int i = 0; i < N; ++i)
    for (int c = 0; c < D; ++c) v[i * D + c] = float(i * 3 + c);
  LaserColumnMeanParams p{v.data(), mu.data(), N, D};
  ASSERT_TRUE(LaserColumnMeanRef(p));
  for (int c = 0; c < D; ++c) EXPECT_EQ(mu[c], float(3 + c));
}

}  // namespace
}  // namespace kvstream
