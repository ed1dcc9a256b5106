// LSH kernels on the GPU vs their CPU twins (laser_kv.md §7, §9 test 7):
// K3a column mean and K3 hash bit-exact (K3 except bits whose projection is
// within 1e-6 of 0, and the codes of their tables), K4 counts and K5 best
// matches bit-exact. Fresh random inputs, poisoned outputs; skips without a device.
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
using testing::FloatBits;
using testing::LaserDeviceArena;
using testing::LaserRandomFloats;

TEST(LaserColumnMeanCuda, BitExact) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(201);
  for (int D : {64, 128})
    for (int n : {1, 54, 97, 4097}) {
      const std::vector<float> v = LaserRandomFloats(size_t(n) * D, &rng);
      std::vector<float> want(D, NAN);
      ASSERT_TRUE(LaserColumnMeanRef({v.data(), want.data(), n, D}));
      LaserDeviceArena arena;
      LaserColumnMeanParams dp{arena.Up(v), arena.Poisoned<float>(D), n, D};
      ASSERT_CUDA(LaunchLaserColumnMean(dp, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      const std::vector<float> got = Down(dp.mu, D);
      for (int c = 0; c < D; ++c) ASSERT_EQ(FloatBits(got[c]), FloatBits(want[c])) << "D" << D << " n" << n << " c" << c;
    }
}

TEST(LaserLshHashCuda, BitExactAwayFromZero) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(202);
  const int shapes[][2] = {{4, 6}, {8, 10}, {20, 12}, {128, 8}, {2, 16}};
  for (int D : {64, 128})
    for (const auto& lk : shapes)
      for (int n : {1, 54, 97, 4097})
        for (bool centred : {false, true}) {
          std::ostringstream what;
          what << "D" << D << " L" << lk[0] << " K" << lk[1] << " n" << n << (centred ? " centred" : "");
          const int L = lk[0], K = lk[1], LK = L * K, W = LaserCodeWords(L, K);
          std::vector<float> r(size_t(D) * LK);
          ASSERT_TRUE(LaserMakeProjection(0x4C41534552ull + n, D, L, K, r.data()));
          std::vector<float> v = LaserRandomFloats(size_t(n) * D, &rng);
          v[0] = 0.0f;  // a row with an exact zero component
          std::vector<float> mu(D);
          if (centred) {
            ASSERT_TRUE(LaserColumnMeanRef({v.data(), mu.data(), n, D}));
          }
          std::vector<int32_t> codes(size_t(n) * L, -1);
          std::vector<uint64_t> bits(size_t(n) * W, ~0ull);
          LaserLshHashParams p;
          p.num_rows = n, p.head_dim = D, p.num_tables = L, p.num_bits = K;
          LaserLshHashParams hp = p;
          hp.v = v.data(), hp.mu = centred ? mu.data() : nullptr, hp.r = r.data();
          hp.codes = codes.data(), hp.bits = bits.data();
          ASSERT_TRUE(LaserLshHashRef(hp));
          LaserDeviceArena arena;
          LaserLshHashParams dp = p;
          dp.v = arena.Up(v), dp.mu = centred ? arena.Up(mu) : nullptr, dp.r = arena.Up(r);
          dp.codes = arena.Poisoned<int32_t>(codes.size()), dp.bits = arena.Poisoned<uint64_t>(bits.size(), 0xA5);
          ASSERT_CUDA(LaunchLaserLshHash(dp, nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          const std::vector<int32_t> gc = Down(dp.codes, codes.size());
          const std::vector<uint64_t> gb = Down(dp.bits, bits.size());
          int skipped = 0;
          for (int i = 0; i < n; ++i) {
            // Columns whose projection (in double) is within 1e-6 of 0 may differ.
            std::vector<uint64_t> mask(W, ~0ull);
            std::vector<bool> table_ok(L, true);
            for (int col = 0; col < LK; ++col) {
              double proj = 0.0;
              for (int c = 0; c < D; ++c) {
                const double x = centred ? double(v[size_t(i) * D + c] - mu[c]) : v[size_t(i) * D + c];
                proj += x * r[size_t(c) * LK + col];
              }
              if (std::fabs(proj) < 1e-6) {
                mask[col / 64] &= ~(1ull << (col % 64));
                table_ok[col / K] = false;
                ++skipped;
              }
            }
            for (int t = 0; t < L; ++t) {
              if (table_ok[t]) {
                ASSERT_EQ(gc[size_t(i) * L + t], codes[size_t(i) * L + t]) << what.str() << " i" << i << " t" << t;
              }
            }
            for (int w = 0; w < W; ++w)
              ASSERT_EQ(gb[size_t(i) * W + w] & mask[w], bits[size_t(i) * W + w] & mask[w]) << what.str() << " i" << i;
          }
          if (skipped > 0) RecordProperty("skipped_near_zero", skipped);
        }
}

TEST(LaserCollisionCountCuda, BitExact) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(203);
  const int shapes[][2] = {{4, 6}, {8, 10}, {20, 12}, {128, 8}, {2, 16}, {64, 3}};
  for (const auto& lk : shapes)
    for (int q : {1, 7, 64})
      for (int n : {1, 54, 97, 4097}) {
        const int L = lk[0], K = lk[1];
        std::uniform_int_distribution<int32_t> code(0, (1 << K) - 1);
        std::vector<int32_t> qc(size_t(q) * L), cc(size_t(n) * L);
        for (auto& x : qc) x = code(rng);
        for (size_t x = 0; x < cc.size(); ++x)  // a third copied from some query token: collisions
          cc[x] = rng() % 3 == 0 ? qc[(rng() % q) * L + x % L] : code(rng);
        std::vector<uint8_t> want(n, 0xEE);
        LaserCollisionCountParams p;
        p.num_query = q, p.num_cand = n, p.num_tables = L, p.num_bits = K;
        LaserCollisionCountParams hp = p;
        hp.query_codes = qc.data(), hp.cand_codes = cc.data(), hp.counts = want.data();
        ASSERT_TRUE(LaserCollisionCountRef(hp));
        LaserDeviceArena arena;
        LaserCollisionCountParams dp = p;
        dp.query_codes = arena.Up(qc), dp.cand_codes = arena.Up(cc), dp.counts = arena.Poisoned<uint8_t>(n);
        dp.bitmap = arena.Poisoned<uint32_t>(LaserCollisionWorkspaceBytes(L, K) / 4);
        ASSERT_CUDA(LaunchLaserCollisionCount(dp, nullptr));
        ASSERT_CUDA(cudaDeviceSynchronize());
        ASSERT_EQ(Down(dp.counts, n), want) << "L" << L << " K" << K << " q" << q << " n" << n;
      }
}

TEST(LaserBestMatchCuda, BitExact) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937_64 rng(204);
  const int shapes[][2] = {{4, 6}, {8, 10}, {20, 12}, {128, 8}};
  for (const auto& lk : shapes)
    for (int q : {1, 7, 64})
      for (int n : {1, 54, 97, 4097})
        for (bool with_rows : {false, true}) {
          const int L = lk[0], K = lk[1], LK = L * K, W = LaserCodeWords(L, K);
          auto random_bits = [&](size_t rows) {
            std::vector<uint64_t> b(rows * W);
            for (size_t x = 0; x < b.size(); ++x) {
              const int w = int(x % W), used = std::min(64, LK - 64 * w);
              b[x] = rng() & (used == 64 ? ~0ull : ((1ull << used) - 1));
            }
            return b;
          };
          const std::vector<uint64_t> qb = random_bits(q), cb = random_bits(n);
          std::vector<int32_t> rows;
          for (int j = 0; j < n; j += with_rows ? 3 : 1) rows.push_back(j);
          const int ns = int(rows.size());
          std::vector<uint16_t> want(ns, 0xFFFF);
          LaserBestMatchParams p;
          p.num_query = q, p.num_rows = ns, p.num_tables = L, p.num_bits = K;
          LaserBestMatchParams hp = p;
          hp.query_bits = qb.data(), hp.cand_bits = cb.data(), hp.rows = with_rows ? rows.data() : nullptr;
          hp.best = want.data();
          ASSERT_TRUE(LaserBestMatchRef(hp));
          LaserDeviceArena arena;
          LaserBestMatchParams dp = p;
          dp.query_bits = arena.Up(qb), dp.cand_bits = arena.Up(cb), dp.rows = with_rows ? arena.Up(rows) : nullptr;
          dp.best = arena.Poisoned<uint16_t>(ns);
          ASSERT_CUDA(LaunchLaserBestMatch(dp, nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          ASSERT_EQ(Down(dp.best, ns), want) << "L" << L << " K" << K << " q" << q << " n" << n;
        }
}

}  // namespace
}  // namespace kvstream
