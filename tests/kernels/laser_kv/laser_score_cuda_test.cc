// K1 laser_window_scores, K1b laser_pool_scores and K2 laser_head_mean on
// the GPU vs their CPU twins (laser_kv.md §7, §9 test 6), fresh random
// inputs, poisoned outputs. Skips with a reason where no CUDA device is
// present.
// Bounds (§7): scores (accumulated over 3 layers onto random start values)
// and head means rel. err <= 1e-3; row statistics m and Zs rel. err <= 1e-3;
// pooled scores bit-equal (one formula, same fp32 order).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/kernels/laser_kv/laser_cuda_util.h"

namespace kvstream {
namespace {

using testing::Down;
using testing::LaserDeviceArena;
using testing::LaserRandomBytes;
using testing::LaserRandomFloats;
using testing::LaserRelErr;
using testing::LaserTestSegment;

struct ScoreCase {
  int len0, len1, q;
  bool token_major;  // the block segment laid out [len, Hkv, D] (strided)
};

void RunScoresCase(KvDType dt, int D, int G, const ScoreCase& sc, std::mt19937* rng) {
  std::ostringstream what;
  what << KvDTypeName(dt) << " D" << D << " G" << G << " len " << sc.len0 << "+" << sc.len1 << " q" << sc.q
       << (sc.token_major ? " strided" : "");
  const int Hkv = 2, H = Hkv * G, Q = sc.q, wn = sc.len0 + sc.len1, Ly = 3;
  std::vector<float> host_scores = LaserRandomFloats(wn, rng, 0.5f);
  LaserDeviceArena arena;
  float* dev_scores = arena.Up(host_scores);
  float* dev_stats = arena.Poisoned<float>(LaserWindowScoresWorkspaceBytes(H, Q) / sizeof(float));
  std::vector<float> host_stats(2 * size_t(H) * Q, NAN);
  for (int l = 0; l < Ly; ++l) {
    LaserTestSegment a(1, Hkv, sc.len0, D, dt, rng, 0), b(1, Hkv, sc.len1, D, dt, rng, 5000, sc.token_major);
    if (sc.token_major && sc.len1 > 1) {
      ASSERT_NE(b.seg.stride_j, D) << "case must be strided";
    }
    // q with a padded token stride (rows of H*D + 8 elements).
    const int64_t qst = int64_t(H) * D + 8;
    const std::vector<uint8_t> q = LaserRandomBytes(size_t(Q) * qst, dt, rng);
    LaserWindowScoresParams p;
    p.q_stride_t = qst;
    p.num_heads = H, p.num_kv_heads = Hkv, p.head_dim = D, p.num_query = Q;
    p.scale = 1.0f / std::sqrt(float(D)), p.dtype = dt;
    LaserWindowScoresParams hp = p;
    hp.q = q.data(), hp.seg[0] = a.seg, hp.seg[1] = b.seg, hp.scores = host_scores.data();
    hp.row_stats = host_stats.data();
    ASSERT_TRUE(LaserWindowScoresRef(hp)) << what.str();
    LaserWindowScoresParams dp = p;
    dp.q = arena.Up(q), dp.seg[0] = arena.UpSegment(a), dp.seg[1] = arena.UpSegment(b);
    dp.scores = dev_scores, dp.row_stats = dev_stats;
    ASSERT_CUDA(LaunchLaserWindowScores(dp, nullptr));
  }
  ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_LE(LaserRelErr(Down(dev_scores, wn), host_scores), 1e-3) << what.str();
  const std::vector<float> gs = Down(dev_stats, host_stats.size());
  const std::vector<float> gm(gs.begin(), gs.begin() + H * Q), hm(host_stats.begin(), host_stats.begin() + H * Q);
  const std::vector<float> gz(gs.begin() + H * Q, gs.end()), hz(host_stats.begin() + H * Q, host_stats.end());
  EXPECT_LE(LaserRelErr(gm, hm), 1e-3) << what.str() << " (row max)";
  EXPECT_LE(LaserRelErr(gz, hz), 1e-3) << what.str() << " (row sum)";
}

TEST(LaserWindowScoresCuda, MatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(101);
  const ScoreCase cases[] = {{0, 1, 1, false}, {0, 54, 7, false}, {40, 57, 8, true},
                             {97, 33, 64, false}, {1024, 3073, 16, true}};
  for (KvDType dt : {KvDType::kBf16, KvDType::kFp32})
    for (int D : {64, 128})
      for (int G : {1, 3, 4})
        for (const ScoreCase& sc : cases) RunScoresCase(dt, D, G, sc, &rng);
}

TEST(LaserWindowScoresCuda, MassInvariantOnDevice) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(102);
  const int H = 9, Hkv = 3, D = 64, Q = 64, n0 = 300, n1 = 1024, Ly = 4;
  LaserDeviceArena arena;
  float* scores = arena.Up(std::vector<float>(n0 + n1, 0.0f));
  float* stats = arena.Poisoned<float>(LaserWindowScoresWorkspaceBytes(H, Q) / sizeof(float));
  for (int l = 0; l < Ly; ++l) {
    LaserTestSegment a(1, Hkv, n0, D, KvDType::kBf16, &rng, 0), b(1, Hkv, n1, D, KvDType::kBf16, &rng, 0);
    LaserWindowScoresParams p;
    p.q = arena.Up(LaserRandomBytes(size_t(Q) * H * D, KvDType::kBf16, &rng));
    p.seg[0] = arena.UpSegment(a), p.seg[1] = arena.UpSegment(b);
    p.scores = scores, p.row_stats = stats;
    p.num_heads = H, p.num_kv_heads = Hkv, p.head_dim = D, p.num_query = Q, p.scale = 0.125f;
    p.dtype = KvDType::kBf16;
    ASSERT_CUDA(LaunchLaserWindowScores(p, nullptr));
  }
  ASSERT_CUDA(cudaDeviceSynchronize());
  double sum = 0.0;
  for (float s : Down(scores, n0 + n1)) sum += s;
  EXPECT_NEAR(sum / (Ly * H * Q), 1.0, 1e-4);
}

TEST(LaserPoolScoresCuda, BitEqualToTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(211);
  for (int n : {1, 7, 300, 5000})
    for (int r : {0, 1, 3, 64}) {
      // Ascending positions with gaps now and then (a T or C history before the block).
      std::vector<int32_t> pos(n);
      int32_t at = 0;
      for (int j = 0; j < n; ++j) pos[j] = at += (rng() % 11 == 0 ? 1 + int32_t(rng() % 9) : 1);
      const std::vector<float> s = LaserRandomFloats(n, &rng, 3.0f);
      std::vector<float> want(n, NAN);
      LaserPoolScoresParams hp;
      hp.scores = s.data(), hp.pos = pos.data(), hp.out = want.data(), hp.num = n, hp.radius = r;
      ASSERT_TRUE(LaserPoolScoresRef(hp));
      LaserDeviceArena arena;
      LaserPoolScoresParams dp = hp;
      dp.scores = arena.Up(s), dp.pos = arena.Up(pos), dp.out = arena.Poisoned<float>(n);
      ASSERT_CUDA(LaunchLaserPoolScores(dp, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      const std::vector<float> got = Down(dp.out, n);
      for (int j = 0; j < n; ++j) ASSERT_EQ(got[j], want[j]) << "n " << n << " r " << r << " j " << j;
    }
}

TEST(LaserHeadMeanCuda, MatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(103);
  for (KvDType dt : {KvDType::kBf16, KvDType::kFp32})
    for (int D : {64, 128})
      for (int Hkv : {1, 3, 8})
        for (int n : {1, 54, 97, 4097}) {
          LaserTestSegment s0(1, Hkv, n / 3, D, dt, &rng, 0), s1(1, Hkv, n / 2, D, dt, &rng, 0, true),
              s2(1, Hkv, n - n / 3 - n / 2, D, dt, &rng, 0);
          std::vector<int32_t> rows(n);
          for (int i = 0; i < n; ++i) rows[i] = (i * 7919 + 3) % n;  // a permutation-like spread
          LaserHeadMeanParams p;
          p.num_rows = n, p.num_kv_heads = Hkv, p.head_dim = D, p.dtype = dt;
          std::vector<float> want(size_t(n) * D, NAN);
          LaserHeadMeanParams hp = p;
          hp.seg[0] = s0.seg, hp.seg[1] = s1.seg, hp.seg[2] = s2.seg, hp.rows = rows.data(), hp.out = want.data();
          ASSERT_TRUE(LaserHeadMeanRef(hp));
          LaserDeviceArena arena;
          LaserHeadMeanParams dp = p;
          dp.seg[0] = arena.UpSegment(s0), dp.seg[1] = arena.UpSegment(s1), dp.seg[2] = arena.UpSegment(s2);
          dp.rows = arena.Up(rows), dp.out = arena.Poisoned<float>(want.size());
          ASSERT_CUDA(LaunchLaserHeadMean(dp, nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          EXPECT_LE(LaserRelErr(Down(dp.out, want.size()), want), 1e-3)
              << KvDTypeName(dt) << " D" << D << " Hkv" << Hkv << " n" << n;
        }
}

}  // namespace
}  // namespace kvstream
