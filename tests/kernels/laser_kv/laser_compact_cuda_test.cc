// K8 laser_compact_kv on the GPU vs its CPU twin (laser_kv.md §4.3 step 6,
// §7): bit-exact K, V and positions for every layer in one launch, through
// the 16-byte path and the 2-byte path (a misaligned segment), into a
// poisoned destination with spare capacity that must stay untouched.
// Skips without a device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/kernels/laser_kv/laser_cuda_util.h"

namespace kvstream {
namespace {

using testing::Down;
using testing::LaserDeviceArena;
using testing::LaserTestSegment;

TEST(LaserCompactCuda, BitExactAllLayers) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(401);
  for (KvDType dt : {KvDType::kBf16, KvDType::kFp32})
    for (int D : {64, 128})
      for (int Hkv : {1, 3, 8})
        for (int m : {1, 54, 97, 4097})
          for (bool misaligned : {false, true}) {
            std::ostringstream what;
            what << KvDTypeName(dt) << " D" << D << " Hkv" << Hkv << " M" << m << (misaligned ? " misaligned" : "");
            const int Ly = 4, n0 = m / 2 + 1, n1 = 37, n2 = m + 3;
            LaserTestSegment c(Ly, Hkv, n0, D, dt, &rng, 0), t(Ly, Hkv, n1, D, dt, &rng, 50000, true),
                b(Ly, Hkv, n2, D, dt, &rng, 60000);
            const int total = n0 + n1 + n2;
            std::vector<int32_t> rows(m);
            for (int i = 0; i < m; ++i) rows[i] = int32_t((uint64_t(i) * 2654435761u) % total);
            const int cap = m + 5;
            const size_t esz = KvDTypeSize(dt), elems = size_t(Ly) * Hkv * cap * D;
            LaserCompactParams p;
            p.out_stride_h = int64_t(cap) * D, p.out_stride_l = int64_t(Hkv) * cap * D;
            p.num_rows = m, p.num_layers = Ly, p.num_kv_heads = Hkv, p.head_dim = D, p.dtype = dt;
            std::vector<uint8_t> hk(elems * esz, 0xA5), hv(elems * esz, 0x5A);
            std::vector<int32_t> hpos(m, -1);
            LaserCompactParams hp = p;
            hp.seg[0] = c.seg, hp.seg[1] = t.seg, hp.seg[2] = b.seg;
            hp.rows = rows.data(), hp.k_out = hk.data(), hp.v_out = hv.data(), hp.pos_out = hpos.data();
            ASSERT_TRUE(LaserCompactRef(hp)) << what.str();
            LaserDeviceArena arena;
            LaserCompactParams dp = p;
            dp.seg[0] = arena.UpSegment(c), dp.seg[1] = arena.UpSegment(t), dp.seg[2] = arena.UpSegment(b);
            if (misaligned) {  // the tail's K/V copied one element further in: 2-byte path
              std::vector<uint8_t> kk(esz), vv(esz);
              kk.insert(kk.end(), t.k.begin(), t.k.end());
              vv.insert(vv.end(), t.v.begin(), t.v.end());
              dp.seg[1].k = arena.Up(kk) + esz, dp.seg[1].v = arena.Up(vv) + esz;
            }
            dp.rows = arena.Up(rows);
            dp.k_out = arena.Up(std::vector<uint8_t>(elems * esz, 0xA5));
            dp.v_out = arena.Up(std::vector<uint8_t>(elems * esz, 0x5A));
            dp.pos_out = arena.Poisoned<int32_t>(m);
            ASSERT_CUDA(LaunchLaserCompact(dp, nullptr));
            ASSERT_CUDA(cudaDeviceSynchronize());
            ASSERT_EQ(Down(static_cast<uint8_t*>(dp.k_out), hk.size()), hk) << what.str() << " K";
            ASSERT_EQ(Down(static_cast<uint8_t*>(dp.v_out), hv.size()), hv) << what.str() << " V";
            ASSERT_EQ(Down(dp.pos_out, m), hpos) << what.str() << " positions";
          }
}

}  // namespace
}  // namespace kvstream
