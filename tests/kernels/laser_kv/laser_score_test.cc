// CPU twins of K1 laser_window_scores, K1b laser_pool_scores and K2
// laser_head_mean (laser_kv.md §4.3 steps 4-5, §9 test 6): the mass
// invariant sum_j score_j = Ly*H*q, a planted key ranking first, the GQA map
// g(h) = floor(h*Hkv/H) for H/Hkv = 3 and 4, the pooled means (neighbours by
// position, not across gaps), and head means over strided segments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "tests/kernels/laser_kv/laser_test_util.h"

namespace kvstream {
namespace {

using testing::LaserRandomBytes;
using testing::LaserTestSegment;

TEST(LaserKvHeadOf, MatchesFloorFormula) {
  // H/Hkv = 3 (SmolLM2: 9 heads, 3 KV heads) and 4 (Llama-3-8B: 32, 8).
  for (int h = 0; h < 9; ++h) EXPECT_EQ(LaserKvHeadOf(h, 9, 3), h / 3);
  for (int h = 0; h < 32; ++h) EXPECT_EQ(LaserKvHeadOf(h, 32, 8), h / 4);
  EXPECT_EQ(LaserKvHeadOf(5, 6, 4), 3);  // floor(5*4/6): not a multiple, still the spec's formula
}

TEST(LaserWindowScoresRef, MassSumsToLayersHeadsQueries) {
  std::mt19937 rng(7);
  for (KvDType dt : {KvDType::kFp32, KvDType::kBf16}) {
    for (int D : {64, 128}) {
      const int H = 6, Hkv = 2, Q = 5, Ly = 3;
      std::vector<float> scores(40 + 57, 0.0f);
      for (int l = 0; l < Ly; ++l) {
        LaserTestSegment tail(1, Hkv, 40, D, dt, &rng, 0), block(1, Hkv, 57, D, dt, &rng, 100, true);
        const std::vector<uint8_t> q = LaserRandomBytes(size_t(Q) * H * D, dt, &rng);
        LaserWindowScoresParams p;
        p.q = q.data();
        p.seg[0] = tail.seg;
        p.seg[1] = block.seg;
        p.scores = scores.data();
        p.num_heads = H, p.num_kv_heads = Hkv, p.head_dim = D, p.num_query = Q;
        p.scale = 1.0f / std::sqrt(float(D));
        p.dtype = dt;
        ASSERT_TRUE(LaserWindowScoresRef(p));
      }
      const double sum = std::accumulate(scores.begin(), scores.end(), 0.0);
      EXPECT_NEAR(sum / (Ly * H * Q), 1.0, 1e-4) << KvDTypeName(dt) << " D" << D;
      for (float s : scores) EXPECT_GT(s, 0.0f);
    }
  }
}

TEST(LaserWindowScoresRef, EmptyFirstSegmentIsBlockOnly) {
  std::mt19937 rng(8);
  const int H = 4, Hkv = 1, Q = 3, D = 64;
  LaserTestSegment block(1, Hkv, 9, D, KvDType::kFp32, &rng, 0);
  const std::vector<uint8_t> q = LaserRandomBytes(size_t(Q) * H * D, KvDType::kFp32, &rng);
  std::vector<float> scores(9, 0.0f);
  LaserWindowScoresParams p;
  p.q = q.data();
  p.seg[1] = block.seg;  // seg[0] unused (boundary_smoothing off, §6.5)
  p.scores = scores.data();
  p.num_heads = H, p.num_kv_heads = Hkv, p.head_dim = D, p.num_query = Q, p.scale = 0.125f;
  p.dtype = KvDType::kFp32;
  ASSERT_TRUE(LaserWindowScoresRef(p));
  EXPECT_NEAR(std::accumulate(scores.begin(), scores.end(), 0.0), H * Q, 1e-4 * H * Q);
  p.seg[1].len = 0;
  EXPECT_STREQ(LaserWindowScoresValidate(p), "the window (seg[0].len + seg[1].len) must hold >= 1 key");
}

// Only query head h0 has a non-zero query; a key aligned with it is planted in
// KV head g(h0) (it must rank first) and a decoy in another KV head (it must
// not): this pins the GQA map for every head.
void CheckPlantedKey(int H, int Hkv) {
  std::mt19937 rng(11 + H);
  const int D = 64, Q = 2, n0 = 20, n1 = 31, wn = n0 + n1;
  for (int h0 = 0; h0 < H; ++h0) {
    const int g0 = LaserKvHeadOf(h0, H, Hkv), decoy_g = (g0 + 1) % Hkv;
    LaserTestSegment a(1, Hkv, n0, D, KvDType::kFp32, &rng, 0), b(1, Hkv, n1, D, KvDType::kFp32, &rng, 50);
    std::vector<float> q(size_t(Q) * H * D, 0.0f);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int t = 0; t < Q; ++t)
      for (int c = 0; c < D; ++c) q[(size_t(t) * H + h0) * D + c] = nd(rng);
    const int planted = n0 + 7, decoy = 3;  // window indices (block row 7, tail row 3)
    for (int c = 0; c < D; ++c) {
      b.SetK(0, g0, 7, c, 4.0f * q[size_t(h0) * D + c]);
      a.SetK(0, decoy_g, 3, c, 8.0f * q[size_t(h0) * D + c]);
    }
    std::vector<float> scores(wn, 0.0f);
    LaserWindowScoresParams p;
    p.q = q.data();
    p.seg[0] = a.seg;
    p.seg[1] = b.seg;
    p.scores = scores.data();
    p.num_heads = H, p.num_kv_heads = Hkv, p.head_dim = D, p.num_query = Q, p.scale = 0.125f;
    p.dtype = KvDType::kFp32;
    ASSERT_TRUE(LaserWindowScoresRef(p));
    const int top = int(std::max_element(scores.begin(), scores.end()) - scores.begin());
    EXPECT_EQ(top, planted) << "H " << H << " Hkv " << Hkv << " h0 " << h0;
    if (Hkv > 1) {
      EXPECT_LT(scores[decoy], scores[planted] * 0.5f) << "h0 " << h0;
    }
  }
}

TEST(LaserWindowScoresRef, PlantedKeyRanksFirstGqa3) { CheckPlantedKey(6, 2); }
TEST(LaserWindowScoresRef, PlantedKeyRanksFirstGqa4) { CheckPlantedKey(8, 2); }
TEST(LaserWindowScoresRef, PlantedKeyRanksFirstGqa3Smol) { CheckPlantedKey(9, 3); }

TEST(LaserPoolScoresRef, MeanOverNeighboursByPosition) {
  // Positions 10..14, then a gap (T or C history), then 40..42.
  const std::vector<int32_t> pos = {10, 11, 12, 13, 14, 40, 41, 42};
  const std::vector<float> s = {1, 2, 4, 8, 16, 32, 64, 128};
  std::vector<float> out(s.size(), NAN);
  LaserPoolScoresParams p;
  p.scores = s.data(), p.pos = pos.data(), p.out = out.data(), p.num = int(s.size()), p.radius = 1;
  ASSERT_TRUE(LaserPoolScoresRef(p));
  const std::vector<float> want1 = {1.5f, 7.0f / 3, 14.0f / 3, 28.0f / 3, 12.0f, 48.0f, 224.0f / 3, 96.0f};
  for (size_t j = 0; j < s.size(); ++j) EXPECT_EQ(out[j], want1[j]) << "r 1, j " << j;
  p.radius = 2;
  ASSERT_TRUE(LaserPoolScoresRef(p));
  EXPECT_EQ(out[0], 7.0f / 3);             // 10, 11, 12
  EXPECT_EQ(out[2], 31.0f / 5);            // 10..14
  EXPECT_EQ(out[4], 28.0f / 3);            // 12, 13, 14: 40 is 26 away
  EXPECT_EQ(out[5], 224.0f / 3);           // 40, 41, 42
  p.radius = 0;
  ASSERT_TRUE(LaserPoolScoresRef(p));
  EXPECT_EQ(out, s) << "radius 0 copies";
  // A lone high score lifts its neighbours: a span around one attended token
  // outranks isolated tokens of middling score.
  std::vector<int32_t> pos2(32);
  std::iota(pos2.begin(), pos2.end(), 100);
  std::vector<float> s2(32, 1.0f);
  s2[5] = 30.0f, s2[20] = 4.0f, s2[25] = 4.0f;
  std::vector<float> out2(32, NAN);
  LaserPoolScoresParams p2;
  p2.scores = s2.data(), p2.pos = pos2.data(), p2.out = out2.data(), p2.num = 32, p2.radius = 3;
  ASSERT_TRUE(LaserPoolScoresRef(p2));
  for (int j = 2; j <= 8; ++j) EXPECT_GT(out2[j], out2[20]) << "j " << j;
}

TEST(LaserPoolScoresRef, RejectsBadParams) {
  const std::vector<int32_t> pos = {3, 2};
  const std::vector<float> s = {1, 2};
  std::vector<float> out(2);
  LaserPoolScoresParams p;
  p.scores = s.data(), p.pos = pos.data(), p.out = out.data(), p.num = 2, p.radius = 1;
  EXPECT_FALSE(LaserPoolScoresRef(p)) << "positions must ascend";
  const std::vector<int32_t> ok = {2, 3};
  p.pos = ok.data();
  EXPECT_TRUE(LaserPoolScoresRef(p));
  p.radius = kLaserMaxPoolRadius + 1;
  EXPECT_NE(LaserPoolScoresValidate(p), nullptr);
  p.radius = 1, p.out = const_cast<float*>(s.data());
  EXPECT_NE(LaserPoolScoresValidate(p), nullptr) << "aliasing";
  p.num = 0, p.scores = nullptr, p.pos = nullptr, p.out = nullptr;
  EXPECT_EQ(LaserPoolScoresValidate(p), nullptr) << "empty window";
}

TEST(LaserHeadMeanRef, MeanOverKvHeadsThroughRowList) {
  std::mt19937 rng(3);
  for (KvDType dt : {KvDType::kFp32, KvDType::kBf16}) {
    const int Hkv = 3, D = 128;
    LaserTestSegment s0(1, Hkv, 5, D, dt, &rng, 0), s1(1, Hkv, 0, D, dt, &rng, 0),
        s2(1, Hkv, 8, D, dt, &rng, 20, true);
    const std::vector<int32_t> rows = {12, 0, 4, 5, 7};
    std::vector<float> out(rows.size() * D, NAN);
    LaserHeadMeanParams p;
    p.seg[0] = s0.seg, p.seg[1] = s1.seg, p.seg[2] = s2.seg;
    p.rows = rows.data();
    p.out = out.data();
    p.num_rows = int(rows.size()), p.num_kv_heads = Hkv, p.head_dim = D, p.dtype = dt;
    ASSERT_TRUE(LaserHeadMeanRef(p));
    for (size_t i = 0; i < rows.size(); ++i) {
      const LaserTestSegment& s = rows[i] < 5 ? s0 : s2;
      const int j = rows[i] < 5 ? rows[i] : rows[i] - 5;
      for (int c = 0; c < D; ++c) {
        const float want = (s.K(0, 0, j, c) + s.K(0, 1, j, c) + s.K(0, 2, j, c)) / 3.0f;
        ASSERT_EQ(out[i * D + c], want) << "row " << i << " c " << c;
      }
    }
    const std::vector<int32_t> bad = {13};
    p.rows = bad.data(), p.num_rows = 1;
    EXPECT_FALSE(LaserHeadMeanRef(p)) << "row past the segments";
  }
}

}  // namespace
}  // namespace kvstream
