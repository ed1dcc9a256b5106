// CPU twins of K6 laser_tiebreak_dist, K7a laser_make_keys and K7
// laser_select_topk (laser_kv.md §4.3 step 5, §6.9): distances on small hand
// examples for every mode, the chunk rule of partitioned_centroid, and the
// tie rules (exact and magicpig: higher position wins; frequency_rank: list order).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/kernels/laser_kv/laser_test_util.h"

namespace kvstream {
namespace {

constexpr int kD = 64;

// Rows of D floats with the given leading values (the rest 0).
std::vector<float> Rows(const std::vector<std::vector<float>>& lead) {
  std::vector<float> out(lead.size() * kD, 0.0f);
  for (size_t i = 0; i < lead.size(); ++i)
    for (size_t c = 0; c < lead[i].size(); ++c) out[i * kD + c] = lead[i][c];
  return out;
}

std::vector<float> Dist(const std::vector<float>& v, const std::vector<float>& u, LaserTieBreak mode,
                        const float* mu = nullptr) {
  const int nc = int(v.size() / kD), q = int(u.size() / kD);
  std::vector<float> d(nc, NAN);
  LaserTiebreakParams p;
  p.v = v.data(), p.u = u.data(), p.mu = mu, p.dist = d.data();
  p.num_cand = nc, p.num_query = q, p.head_dim = kD, p.mode = mode;
  EXPECT_TRUE(LaserTiebreakRef(p));
  return d;
}

TEST(LaserTiebreakRef, HandExamplesEveryMode) {
  const std::vector<float> u = Rows({{0, 0}, {2, 0}});
  const std::vector<float> v = Rows({{1, 0}, {3, 1}});
  std::vector<float> d = Dist(v, u, LaserTieBreak::kL2);  // mean u = (1, 0)
  EXPECT_FLOAT_EQ(d[0], 0.0f);
  EXPECT_FLOAT_EQ(d[1], std::sqrt(5.0f));
  d = Dist(v, u, LaserTieBreak::kMaxSim);
  EXPECT_FLOAT_EQ(d[0], 1.0f);
  EXPECT_FLOAT_EQ(d[1], std::sqrt(2.0f));
  // Unbiased variance: dim 0 = ((0-1)^2 + (2-1)^2) / 1 = 2; other dims 0 -> 1e-8.
  d = Dist(v, u, LaserTieBreak::kMahalanobis);
  EXPECT_FLOAT_EQ(d[0], 0.0f);
  EXPECT_NEAR(d[1], std::sqrt(4.0 / 2.0 + 1.0 / 1e-8), 1e-6 * 1e4);
  d = Dist(v, u, LaserTieBreak::kNone);
  EXPECT_EQ(d, (std::vector<float>{0.0f, 0.0f}));
}

TEST(LaserTiebreakRef, MahalanobisWithOneQueryFallsBackToL2) {
  const std::vector<float> u = Rows({{1, 2}});
  const std::vector<float> v = Rows({{4, 6}});
  EXPECT_FLOAT_EQ(Dist(v, u, LaserTieBreak::kMahalanobis)[0], 5.0f);
}

TEST(LaserTiebreakRef, CentringCancels) {
  const std::vector<float> u = Rows({{0, 0}, {2, 0}, {1, 5}});
  const std::vector<float> v = Rows({{1, 0}, {3, 1}, {-2, 4}});
  std::vector<float> mu(kD, 0.0f);
  mu[0] = 0.75f, mu[1] = -0.5f, mu[5] = 2.0f;
  for (LaserTieBreak m : {LaserTieBreak::kL2, LaserTieBreak::kMaxSim, LaserTieBreak::kMahalanobis,
                          LaserTieBreak::kPartitionedCentroid}) {
    const std::vector<float> a = Dist(v, u, m), b = Dist(v, u, m, mu.data());
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(a[j], b[j], 1e-5 * (1 + a[j])) << int(m) << " j " << j;
  }
}

TEST(LaserChunks, SpecRule) {
  // k = min(max(1, floor(q/16)), 8), rows per chunk ceil(q/k).
  const int cases[][3] = {{1, 1, 1}, {15, 1, 15}, {16, 1, 16}, {32, 2, 16}, {33, 2, 17},
                          {64, 4, 16}, {130, 8, 17}, {200, 8, 25}};
  for (const auto& c : cases) {
    EXPECT_EQ(LaserNumChunks(c[0]), c[1]) << "q " << c[0];
    EXPECT_EQ(LaserChunkRows(c[0]), c[2]) << "q " << c[0];
  }
}

TEST(LaserTiebreakRef, PartitionedCentroidMinOverChunks) {
  // q = 40: 2 chunks of 20 rows; centroids (0, 0) and (10, 0).
  std::vector<std::vector<float>> lead;
  for (int t = 0; t < 40; ++t) lead.push_back({t < 20 ? (t % 2 ? 1.0f : -1.0f) : 10.0f, 0.0f});
  const std::vector<float> u = Rows(lead);
  const std::vector<float> v = Rows({{9, 0}, {4, 0}, {5, 3}});
  const std::vector<float> d = Dist(v, u, LaserTieBreak::kPartitionedCentroid);
  EXPECT_FLOAT_EQ(d[0], 1.0f);
  EXPECT_FLOAT_EQ(d[1], 4.0f);
  EXPECT_FLOAT_EQ(d[2], std::sqrt(34.0f));
}

std::vector<int32_t> TopK(const std::vector<uint64_t>& keys, int k) {
  std::vector<int32_t> out(std::min<size_t>(k, keys.size()), -1);
  LaserSelectTopkParams p;
  p.keys = keys.data(), p.out = out.data(), p.num = int(keys.size()), p.k = k;
  EXPECT_TRUE(LaserSelectTopkRef(p));
  return out;
}

TEST(LaserSelectTopkRef, ExactTieGoesToHigherPosition) {
  const std::vector<float> score = {0.5f, 2.0f, -1.0f, 2.0f, 0.0f, -0.0f};
  const std::vector<int32_t> pos = {3, 5, 8, 9, 12, 30};
  std::vector<uint64_t> keys(6);
  LaserMakeKeysParams kp;
  kp.mode = LaserKeyMode::kExact, kp.score = score.data(), kp.pos = pos.data(), kp.keys = keys.data(), kp.num = 6;
  ASSERT_TRUE(LaserMakeKeysRef(kp));
  EXPECT_EQ(TopK(keys, 1), (std::vector<int32_t>{3}));      // 2.0 at positions 5 and 9: 9 wins
  EXPECT_EQ(TopK(keys, 2), (std::vector<int32_t>{1, 3}));   // ascending output
  EXPECT_EQ(TopK(keys, 3), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(TopK(keys, 4), (std::vector<int32_t>{0, 1, 3, 4}));  // +0 > -0
  EXPECT_EQ(TopK(keys, 9), (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_TRUE(TopK(keys, 0).empty());
  // Through a window-index map (candidate i has score[rows[i]]).
  const std::vector<int32_t> rows = {5, 1};
  std::vector<uint64_t> k2(2);
  kp.score_rows = rows.data(), kp.keys = k2.data(), kp.num = 2;
  ASSERT_TRUE(LaserMakeKeysRef(kp));
  EXPECT_EQ(k2[0], LaserExactKey(-0.0f, 3));
  EXPECT_EQ(k2[1], LaserExactKey(2.0f, 5));
}

TEST(LaserSelectTopkRef, MagicpigTieGoesToHigherPosition) {
  const std::vector<uint16_t> best = {7, 9, 9, 3};
  const std::vector<int32_t> pos = {40, 41, 57, 60};
  std::vector<uint64_t> keys(4);
  LaserMakeKeysParams kp;
  kp.mode = LaserKeyMode::kMagicpig, kp.best = best.data(), kp.pos = pos.data(), kp.keys = keys.data(), kp.num = 4;
  ASSERT_TRUE(LaserMakeKeysRef(kp));
  EXPECT_EQ(TopK(keys, 1), (std::vector<int32_t>{2}));
  EXPECT_EQ(TopK(keys, 3), (std::vector<int32_t>{0, 1, 2}));
}

TEST(LaserSelectTopkRef, FrequencyRankKeepsListOrderOnTies) {
  // Order: count desc, dist asc, then list order: 2, 3, 1, 0, 4 (and 5 last).
  const std::vector<uint8_t> counts = {2, 3, 3, 3, 1, 0};
  const std::vector<float> dist = {0.0f, 0.5f, 0.2f, 0.2f, 0.0f, 0.0f};
  std::vector<uint64_t> keys(6);
  LaserMakeKeysParams kp;
  kp.mode = LaserKeyMode::kFrequency, kp.counts = counts.data(), kp.dist = dist.data(), kp.keys = keys.data();
  kp.num = 6;
  ASSERT_TRUE(LaserMakeKeysRef(kp));
  EXPECT_EQ(TopK(keys, 1), (std::vector<int32_t>{2}));
  EXPECT_EQ(TopK(keys, 2), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(TopK(keys, 3), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(TopK(keys, 4), (std::vector<int32_t>{0, 1, 2, 3}));
  // tie_break none: dist null, ties by count then list order.
  kp.dist = nullptr;
  ASSERT_TRUE(LaserMakeKeysRef(kp));
  EXPECT_EQ(TopK(keys, 1), (std::vector<int32_t>{1}));
  EXPECT_EQ(TopK(keys, 3), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(TopK(keys, 4), (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(LaserOrderedBits, PreservesOrder) {
  const float xs[] = {-INFINITY, -1e30f, -2.0f, -1e-40f, -0.0f, 0.0f, 1e-40f, 1.0f, 3e38f, INFINITY};
  for (size_t i = 1; i < sizeof(xs) / sizeof(xs[0]); ++i)
    EXPECT_LT(LaserOrderedBits(xs[i - 1]), LaserOrderedBits(xs[i])) << xs[i - 1] << " vs " << xs[i];
}

}  // namespace
}  // namespace kvstream
