// CPU twin of K8 laser_compact_kv (laser_kv.md §4.3 step 6): kept rows of
// every layer gathered exactly from three segments (one token-major, one with
// spare capacity) into a destination with capacity > M; padding untouched.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "tests/kernels/laser_kv/laser_test_util.h"

namespace kvstream {
namespace {

using testing::LaserTestSegment;

TEST(LaserCompactRef, GathersAllLayersExactly) {
  std::mt19937 rng(5);
  for (KvDType dt : {KvDType::kFp32, KvDType::kBf16}) {
    for (int D : {64, 128}) {
      const int Ly = 3, Hkv = 2;
      LaserTestSegment c(Ly, Hkv, 6, D, dt, &rng, 0, false, 3), t(Ly, Hkv, 4, D, dt, &rng, 100, true),
          b(Ly, Hkv, 9, D, dt, &rng, 200);
      const std::vector<int32_t> rows = {0, 2, 5, 6, 9, 10, 18, 13};  // C 0,2,5; T 0,3; block 0,8,3
      const int M = int(rows.size()), cap = M + 4;
      const size_t esz = KvDTypeSize(dt), n = size_t(Ly) * Hkv * cap * D;
      std::vector<uint8_t> ko(n * esz, 0xA5), vo(n * esz, 0x5A);
      std::vector<int32_t> po(M, -7);
      LaserCompactParams p;
      p.seg[0] = c.seg, p.seg[1] = t.seg, p.seg[2] = b.seg;
      p.rows = rows.data(), p.k_out = ko.data(), p.v_out = vo.data(), p.pos_out = po.data();
      p.out_stride_h = int64_t(cap) * D, p.out_stride_l = int64_t(Hkv) * cap * D;
      p.num_rows = M, p.num_layers = Ly, p.num_kv_heads = Hkv, p.head_dim = D, p.dtype = dt;
      ASSERT_TRUE(LaserCompactRef(p));
      EXPECT_EQ(po, (std::vector<int32_t>{0, 4, 10, 100, 106, 200, 216, 206}));
      for (int i = 0; i < cap; ++i) {
        const int r = i < M ? rows[i] : -1;
        const LaserTestSegment* s = r < 0 ? nullptr : r < 6 ? &c : r < 10 ? &t : &b;
        const int j = r < 6 ? r : r < 10 ? r - 6 : r - 10;
        for (int l = 0; l < Ly; ++l)
          for (int g = 0; g < Hkv; ++g) {
            const size_t off = (size_t(l) * Hkv * cap + size_t(g) * cap + i) * D * esz;
            if (!s) {
              ASSERT_EQ(ko[off], 0xA5) << "padding row " << i << " written";
              continue;
            }
            ASSERT_EQ(std::memcmp(&ko[off], &s->k[s->Off(l, g, j, 0) * esz], D * esz), 0) << "K i" << i;
            ASSERT_EQ(std::memcmp(&vo[off], &s->v[s->Off(l, g, j, 0) * esz], D * esz), 0) << "V i" << i;
          }
      }
    }
  }
}

TEST(LaserCompactRef, RejectsRowPastSegments) {
  std::mt19937 rng(6);
  LaserTestSegment c(1, 1, 4, 64, KvDType::kFp32, &rng, 0);
  const std::vector<int32_t> rows = {1, 4};
  std::vector<float> ko(2 * 64, NAN), vo(2 * 64, NAN);
  LaserCompactParams p;
  p.seg[0] = c.seg;
  p.rows = rows.data(), p.k_out = ko.data(), p.v_out = vo.data();
  p.num_rows = 2, p.num_layers = 1, p.num_kv_heads = 1, p.head_dim = 64, p.dtype = KvDType::kFp32;
  EXPECT_FALSE(LaserCompactRef(p));
  EXPECT_TRUE(std::isnan(ko[0])) << "nothing written";
}

}  // namespace
}  // namespace kvstream
