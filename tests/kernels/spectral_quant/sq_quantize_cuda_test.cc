// K1 sq_quantize_pack and K3 sq_dequant on the device vs their CPU twins
// (spectral_quant.md §9 test 6): on the same Z the records are bit-identical
// (padding included), QJL r_norm within fp16 rounding and signs equal except
// where the twin's double and the device's fp32 sums straddle 0; K3 exact.
// Fresh random inputs per case; outputs poisoned before each launch.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/spectral_quant/spectral_quant.h"
#include "tests/kernels/spectral_quant/sq_cuda_util.h"

namespace kvstream {
namespace {

using testing::Down;
using testing::RandomEigen;
using testing::RandomSqPlan;
using testing::SqDeviceArena;
using testing::SqTables;
using testing::SqTestPlan;

constexpr uint32_t kPoison = 0xdeadbeefu;

void CheckPackAndDequant(int D, int H, int T, int z_pad, uint32_t seed) {
  std::mt19937 rng(seed);
  const SqTestPlan plan = RandomSqPlan(H, D, &rng, /*extra_pad_words=*/seed % 2);
  const std::vector<float> tables = SqTables();
  const std::vector<float> zp = RandomEigen(plan, T, &rng);
  const int64_t zs = int64_t(H) * D + z_pad;
  std::vector<float> z(size_t(T) * zs, NAN);
  for (int t = 0; t < T; ++t) std::copy_n(&zp[size_t(t) * H * D], H * D, &z[size_t(t) * zs]);
  // Twin.
  std::vector<uint32_t> want(size_t(T) * H * plan.words, kPoison);
  SqQuantizePackParams p;
  p.z = z.data(), p.z_stride_t = zs, p.plan = plan.view(), p.tables = tables.data(), p.records = want.data();
  p.num_tokens = T, p.num_kv_heads = H, p.head_dim = D;
  ASSERT_TRUE(SqQuantizePackRef(p));
  std::vector<float> zhat_want(size_t(T) * H * D, NAN);
  SqDequantParams q;
  q.records = want.data(), q.plan = plan.view(), q.tables = tables.data(), q.zhat = zhat_want.data();
  q.num_tokens = T, q.num_kv_heads = H, q.head_dim = D;
  ASSERT_TRUE(SqDequantRef(q));
  // Device.
  SqDeviceArena arena;
  SqQuantizePackParams dp = p;
  dp.z = arena.Up(z), dp.plan = testing::UploadPlan(plan, &arena), dp.tables = arena.Up(tables);
  dp.records = arena.Poisoned<uint32_t>(want.size(), kPoison);
  ASSERT_CUDA(LaunchSqQuantizePack(dp, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<uint32_t> got = Down(dp.records, want.size());
  size_t diff = 0;
  for (size_t i = 0; i < want.size(); ++i) diff += got[i] != want[i];
  EXPECT_EQ(diff, 0u) << "record words differing from the twin (of " << want.size() << ")";
  SqDequantParams dq = q;
  dq.records = dp.records, dq.plan = dp.plan, dq.tables = dp.tables;
  dq.zhat = arena.Poisoned<float>(zhat_want.size(), NAN);
  ASSERT_CUDA(LaunchSqDequant(dq, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> zhat = Down(dq.zhat, zhat_want.size());
  for (size_t i = 0; i < zhat.size(); ++i) ASSERT_EQ(zhat[i], zhat_want[i]) << "element " << i;
}

TEST(SqQuantizeCuda, CodesBitIdenticalToTwinAndDequantExact) {
  SKIP_WITHOUT_DEVICE();
  for (int D : {64, 128})
    for (int T : {1, 54, 97, 4097}) {
      SCOPED_TRACE("D=" + std::to_string(D) + " T=" + std::to_string(T));
      CheckPackAndDequant(D, /*H=*/3, T, /*z_pad=*/0, 100 + D + T);
    }
}

TEST(SqQuantizeCuda, StridedInputMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  CheckPackAndDequant(128, 8, 97, /*z_pad=*/13, 7);
}

// A graph-replayed decode step's token goes to the row held in device
// memory (first_token): bit-identical to the twin there, poison elsewhere.
TEST(SqQuantizeCuda, FirstTokenInDeviceMemoryMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  for (int D : {64, 128}) {
    SCOPED_TRACE("D=" + std::to_string(D));
    const int H = 8, T = 1, cap = 40, SW = D / 32;
    const int32_t first = 29;
    std::mt19937 rng(700 + D);
    const SqTestPlan plan = RandomSqPlan(H, D, &rng);
    const std::vector<float> tables = SqTables();
    const std::vector<float> z = RandomEigen(plan, T, &rng);
    const std::vector<float> sprime = testing::RandomNormal(size_t(H) * D * D, &rng);
    std::vector<uint32_t> rec(size_t(cap) * H * plan.words, kPoison), sg(size_t(cap) * H * SW, kPoison);
    std::vector<uint16_t> rn(size_t(cap) * H, 0xffff);
    SqQuantizePackParams p;
    p.z = z.data(), p.plan = plan.view(), p.tables = tables.data(), p.records = rec.data();
    p.s_prime = sprime.data(), p.r_norm = rn.data(), p.signs = sg.data(), p.sign_words = SW;
    p.num_tokens = T, p.num_kv_heads = H, p.head_dim = D, p.first_token = &first;
    ASSERT_TRUE(SqQuantizePackRef(p));
    SqDeviceArena arena;
    SqQuantizePackParams dp = p;
    dp.z = arena.Up(z), dp.plan = testing::UploadPlan(plan, &arena), dp.tables = arena.Up(tables);
    dp.s_prime = arena.Up(sprime), dp.first_token = arena.Up(std::vector<int32_t>{first});
    dp.records = arena.Poisoned<uint32_t>(rec.size(), kPoison);
    dp.r_norm = arena.Poisoned<uint16_t>(rn.size(), 0xffff);
    dp.signs = arena.Poisoned<uint32_t>(sg.size(), kPoison);
    ASSERT_CUDA(LaunchSqQuantizePack(dp, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    EXPECT_EQ(Down(dp.records, rec.size()), rec) << "records (the twin's row " << first << ", poison elsewhere)";
    const std::vector<uint16_t> rn_got = Down(dp.r_norm, rn.size());
    for (int r = 0; r < cap * H; ++r) {
      if (r / H != first) {
        ASSERT_EQ(rn_got[r], 0xffff) << "r_norm row " << r / H << " must stay poisoned";
        continue;
      }
      const float a = HalfBitsToFloat(rn_got[r]), b = HalfBitsToFloat(rn[r]);
      ASSERT_NEAR(a, b, 1e-3f * b + 1e-6f) << "r_norm " << r;
    }
    const std::vector<uint32_t> sg_got = Down(dp.signs, sg.size());
    for (size_t w = 0; w < sg.size(); ++w) {
      if (int(w / (size_t(H) * SW)) != first) {
        ASSERT_EQ(sg_got[w], kPoison) << "sign word " << w << " must stay poisoned";
      }
    }
  }
}

TEST(SqQuantizeCuda, QjlNormAndSignsMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  for (int D : {64, 128}) {
    SCOPED_TRACE("D=" + std::to_string(D));
    const int H = 2, T = 97, SW = D / 32;
    std::mt19937 rng(900 + D);
    const SqTestPlan plan = RandomSqPlan(H, D, &rng);
    const std::vector<float> tables = SqTables();
    const std::vector<float> z = RandomEigen(plan, T, &rng);
    const std::vector<float> sprime = testing::RandomNormal(size_t(H) * D * D, &rng);
    std::vector<uint32_t> rec(size_t(T) * H * plan.words), sg(size_t(T) * H * SW, kPoison);
    std::vector<uint16_t> rn(size_t(T) * H, 0xffff);
    SqQuantizePackParams p;
    p.z = z.data(), p.plan = plan.view(), p.tables = tables.data(), p.records = rec.data();
    p.s_prime = sprime.data(), p.r_norm = rn.data(), p.signs = sg.data(), p.sign_words = SW;
    p.num_tokens = T, p.num_kv_heads = H, p.head_dim = D;
    ASSERT_TRUE(SqQuantizePackRef(p));
    SqDeviceArena arena;
    SqQuantizePackParams dp = p;
    dp.z = arena.Up(z), dp.plan = testing::UploadPlan(plan, &arena), dp.tables = arena.Up(tables);
    dp.s_prime = arena.Up(sprime);
    dp.records = arena.Poisoned<uint32_t>(rec.size(), kPoison);
    dp.r_norm = arena.Poisoned<uint16_t>(rn.size(), 0xffff);
    dp.signs = arena.Poisoned<uint32_t>(sg.size(), kPoison);
    ASSERT_CUDA(LaunchSqQuantizePack(dp, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    EXPECT_EQ(Down(dp.records, rec.size()), rec);
    const std::vector<uint16_t> rn_got = Down(dp.r_norm, rn.size());
    for (size_t i = 0; i < rn.size(); ++i) {
      const float a = HalfBitsToFloat(rn_got[i]), b = HalfBitsToFloat(rn[i]);
      ASSERT_NEAR(a, b, 1e-3f * b + 1e-6f) << "r_norm " << i;
    }
    const std::vector<uint32_t> sg_got = Down(dp.signs, sg.size());
    int bits = 0, differ = 0;
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int m = 0; m < 32 * SW; ++m) {
          const size_t w = (size_t(t) * H + h) * SW + m / 32;
          const bool a = (sg_got[w] >> (m % 32)) & 1u, b = (sg[w] >> (m % 32)) & 1u;
          if (m >= plan.d_eff[h]) {
            ASSERT_FALSE(a) << "unused sign bit must be 0";
            continue;
          }
          ++bits, differ += a != b;
        }
    EXPECT_LE(differ, bits / 200) << "sign bits differing from the twin: " << differ << " of " << bits;
  }
}

}  // namespace
}  // namespace kvstream
