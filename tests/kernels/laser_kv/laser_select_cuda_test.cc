// K6 laser_tiebreak_dist, K7a laser_make_keys and K7 laser_select_topk on the
// GPU vs their CPU twins (laser_kv.md §6.9, §7): distances per element within
// rel. 1e-5 (same fp32 order: normally equal), keys bit-exact, and the same
// chosen set (in the same ascending order) for exact, magicpig and
// frequency_rank keys, ties included (both sides are stable). Fresh random
// inputs, poisoned outputs; skips without a device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
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
using testing::LaserRandomFloats;

TEST(LaserTiebreakCuda, MatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(301);
  for (int mode = 0; mode < int(LaserTieBreak::kCount); ++mode)
    for (int D : {64, 128})
      for (int q : {1, 2, 17, 40, 64, 200})
        for (int n : {1, 54, 4097})
          for (bool centred : {false, true}) {
            std::ostringstream what;
            what << "mode " << mode << " D" << D << " q" << q << " n" << n << (centred ? " centred" : "");
            const std::vector<float> v = LaserRandomFloats(size_t(n) * D, &rng), u = LaserRandomFloats(size_t(q) * D, &rng);
            const std::vector<float> mu = LaserRandomFloats(D, &rng, 0.3f);
            std::vector<float> want(n, NAN);
            LaserTiebreakParams p;
            p.num_cand = n, p.num_query = q, p.head_dim = D, p.mode = LaserTieBreak(mode);
            LaserTiebreakParams hp = p;
            hp.v = v.data(), hp.u = u.data(), hp.mu = centred ? mu.data() : nullptr, hp.dist = want.data();
            ASSERT_TRUE(LaserTiebreakRef(hp));
            LaserDeviceArena arena;
            LaserTiebreakParams dp = p;
            dp.v = arena.Up(v), dp.u = arena.Up(u), dp.mu = centred ? arena.Up(mu) : nullptr;
            dp.dist = arena.Poisoned<float>(n), dp.stats = arena.Poisoned<float>(LaserTiebreakWorkspaceBytes(D) / 4);
            ASSERT_CUDA(LaunchLaserTiebreak(dp, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            const std::vector<float> got = Down(dp.dist, n);
            for (int j = 0; j < n; ++j)
              ASSERT_LE(std::fabs(double(got[j]) - want[j]), 1e-5 * std::fabs(want[j]) + 1e-30)
                  << what.str() << " j" << j << " got " << got[j] << " want " << want[j];
          }
}

// Keys of `mode` for n entries on host and device; returns the host keys.
std::vector<uint64_t> CheckKeys(LaserKeyMode mode, int n, std::mt19937* rng, LaserDeviceArena* arena,
                                uint64_t** dev_keys) {
  std::vector<float> score = LaserRandomFloats(n + 5, rng);
  for (size_t i = 0; i < score.size(); i += 7) score[i] = score[0];  // exact ties: position decides
  std::vector<int32_t> rows(n), pos(n);
  for (int i = 0; i < n; ++i) rows[i] = (i * 31 + 2) % (n + 5), pos[i] = 3 * i + 1;
  std::vector<uint16_t> best(n);
  std::vector<uint8_t> counts(n);
  std::vector<float> dist = LaserRandomFloats(n, rng);
  for (int i = 0; i < n; ++i) {
    best[i] = uint16_t((*rng)() % 12), counts[i] = uint8_t((*rng)() % 5);
    dist[i] = std::fabs(dist[i]);
    if (i % 5 == 0) dist[i] = 0.25f;  // ties in (count, dist): list order decides
  }
  LaserMakeKeysParams p;
  p.mode = mode, p.num = n;
  std::vector<uint64_t> want(n);
  LaserMakeKeysParams hp = p;
  hp.score = score.data(), hp.score_rows = rows.data(), hp.best = best.data(), hp.pos = pos.data();
  hp.counts = counts.data(), hp.dist = dist.data(), hp.keys = want.data();
  EXPECT_TRUE(LaserMakeKeysRef(hp));
  LaserMakeKeysParams dp = p;
  dp.score = arena->Up(score), dp.score_rows = arena->Up(rows), dp.best = arena->Up(best), dp.pos = arena->Up(pos);
  dp.counts = arena->Up(counts), dp.dist = arena->Up(dist), dp.keys = arena->Poisoned<uint64_t>(n);
  EXPECT_EQ(LaunchLaserMakeKeys(dp, nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(Down(dp.keys, n), want) << "mode " << int(mode) << " n" << n;
  *dev_keys = dp.keys;
  return want;
}

TEST(LaserSelectTopkCuda, SameSetAsTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(302);
  for (LaserKeyMode mode : {LaserKeyMode::kExact, LaserKeyMode::kMagicpig, LaserKeyMode::kFrequency})
    for (int n : {1, 54, 97, 4097, 20000}) {
      LaserDeviceArena arena;
      uint64_t* dev_keys = nullptr;
      const std::vector<uint64_t> keys = CheckKeys(mode, n, &rng, &arena, &dev_keys);
      for (int k : {0, 1, n / 3, n - 1, n, n + 5}) {
        if (k < 0) continue;
        const int keep = std::min(k, n);
        std::vector<int32_t> want(keep, -1);
        LaserSelectTopkParams hp;
        hp.keys = keys.data(), hp.out = want.data(), hp.num = n, hp.k = k;
        ASSERT_TRUE(LaserSelectTopkRef(hp));
        LaserSelectTopkParams dp;
        dp.keys = dev_keys, dp.out = arena.Poisoned<int32_t>(keep), dp.num = n, dp.k = k;
        dp.workspace_bytes = LaserSelectTopkWorkspaceBytes(n, k);
        dp.workspace = arena.Poisoned<uint8_t>(dp.workspace_bytes);
        ASSERT_CUDA(LaunchLaserSelectTopk(dp, nullptr));
        ASSERT_CUDA(cudaDeviceSynchronize());
        ASSERT_EQ(Down(dp.out, keep), want) << "mode " << int(mode) << " n" << n << " k" << k;
      }
    }
}

TEST(LaserSelectTopkCuda, RejectsSmallWorkspace) {
  SKIP_WITHOUT_DEVICE();
  LaserDeviceArena arena;
  LaserSelectTopkParams p;
  p.keys = arena.Poisoned<uint64_t>(100), p.out = arena.Poisoned<int32_t>(10), p.num = 100, p.k = 10;
  p.workspace_bytes = LaserSelectTopkWorkspaceBytes(100, 10) - 1;
  p.workspace = arena.Poisoned<uint8_t>(p.workspace_bytes);
  EXPECT_EQ(LaunchLaserSelectTopk(p, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kvstream
