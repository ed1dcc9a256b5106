// Host-side planning of the dense decode kernel: supported shapes, group
// chunks, the split planner, split ranges, workspace size, and the small
// shared helpers it relies on (fast division, 16-bit conversions).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>

#include "kernels/common/fast_divmod.h"
#include "kernels/common/half_bits.h"
#include "kernels/dense/dense_decode.h"

namespace kvstream {
namespace {

constexpr int kH100Sms = 132;

TEST(DenseDecodePlan, SupportsExactlyHeadDims64And128InAllThreeTypes) {
  for (KvDType t : {KvDType::kFp32, KvDType::kFp16, KvDType::kBf16}) {
    EXPECT_TRUE(DenseDecodeSupports(64, t));
    EXPECT_TRUE(DenseDecodeSupports(128, t));
    for (int d : {0, 32, 80, 96, 256}) EXPECT_FALSE(DenseDecodeSupports(d, t)) << d;
  }
  EXPECT_FALSE(DenseDecodeSupports(128, KvDType::kCount));
}

TEST(DenseDecodePlan, GroupChunkIsLargestDivisorUpToEight) {
  const int expect[] = {1, 1, 2, 3, 4, 5, 6, 7, 8, 3, 5, 1, 6, 1, 7, 5, 8};  // G = 0..16
  for (int g = 0; g <= 16; ++g) EXPECT_EQ(DenseDecodeGroupChunk(g), expect[g]) << "G " << g;
}

TEST(DenseDecodePlan, LongSingleSequencesFillTheGpu) {
  for (int t : {32768, 65536, 131072}) {
    const int s = PlanDenseDecodeSplits(1, 32, 8, t, kH100Sms);
    EXPECT_GE(8 * s, kH100Sms) << "T " << t << ": fewer CTAs than SMs";
    EXPECT_LE(8 * s, kH100Sms * kDenseDecodeCtasPerSm) << "T " << t << ": more than one wave";
  }
}

TEST(DenseDecodePlan, SplitsNeverExceedOneWaveOrShortenChunksBelowTheMinimum) {
  std::mt19937 rng(1);
  for (int i = 0; i < 20000; ++i) {
    const int hkv = 1 << (rng() % 4), g = 1 + rng() % 8, b = 1 + rng() % 70;
    const int t = 1 + rng() % 200000, sms = 1 + rng() % 200;
    const int s = PlanDenseDecodeSplits(b, hkv * g, hkv, t, sms);
    ASSERT_GE(s, 1);
    ASSERT_LE(s, kDenseDecodeMaxSplits);
    if (s > 1) {
      const long long ctas = static_cast<long long>(b) * hkv * (g / DenseDecodeGroupChunk(g)) * s;
      ASSERT_LE(ctas, static_cast<long long>(sms) * kDenseDecodeSplitCtasPerSm);
      ASSERT_GE(t / s, kDenseDecodeMinSplitTokens) << "T " << t << " S " << s;
      ASSERT_TRUE(s < 8 || s % 8 == 0) << "S " << s << ": from 8 up, a multiple of the merge's batch";
    }
  }
}

TEST(DenseDecodePlan, OtherSmCountsKeepMostOfTheWave) {
  // B = 1, Hkv = 8, G = 4, long T: the half-occupancy wave is 2 * SMs / 8 splits.
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 131072, 132), 32);  // H100 SXM: 33 -> 32
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 131072, 114), 24);  // H100 PCIe: 28 -> 24
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 131072, 108), 24);  // A100: 27 -> 24
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 1024, 132), 16);    // 64 tokens a split at least
}

TEST(DenseDecodePlan, FastMemoryFillsAFullWave) {
  // Peak DRAM bandwidth 2 * clock * bus: H100 SXM 2619 MHz x 5120 bits, H200 3201 MHz x 6144 bits.
  const int h100 = DenseDecodeSplitCtasPerSm(2.0 * 2619e6 * 5120 / 8 / 1e9);
  const int h200 = DenseDecodeSplitCtasPerSm(2.0 * 3201e6 * 6144 / 8 / 1e9);
  EXPECT_EQ(h100, kDenseDecodeSplitCtasPerSm);
  EXPECT_EQ(h200, kDenseDecodeFastMemorySplitCtasPerSm);
  // The H200 sweep's best points (dense_decode_s14_h200.json); the H100's stay.
  EXPECT_EQ(PlanDenseDecodeSplits(8, 32, 8, 8192, 132, h200), 8);
  EXPECT_EQ(PlanDenseDecodeSplits(32, 32, 8, 8192, 132, h200), 2);
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 131072, 132, h200), 64);
  EXPECT_EQ(PlanDenseDecodeSplits(64, 32, 8, 8192, 132, h200), 1);
  EXPECT_EQ(PlanDenseDecodeSplits(8, 32, 8, 8192, 132, h100), 4);
  EXPECT_EQ(PlanDenseDecodeSplits(32, 32, 8, 8192, 132, h100), 1);
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 131072, 132, 0), 32) << "a non-positive wave falls back to the default";
}

TEST(DenseDecodePlan, SplitsFallAsBatchGrowsAndRiseAsLengthGrows) {
  int prev = kDenseDecodeMaxSplits + 1;
  for (int b = 1; b <= 128; ++b) {
    const int s = PlanDenseDecodeSplits(b, 32, 8, 32768, kH100Sms);
    EXPECT_LE(s, prev) << "B " << b;
    prev = s;
  }
  EXPECT_EQ(PlanDenseDecodeSplits(64, 32, 8, 32768, kH100Sms), 1) << "a full batch needs no split";
  prev = 0;
  for (int t = 1; t <= 131072; t = t * 3 / 2 + 1) {
    const int s = PlanDenseDecodeSplits(1, 32, 8, t, kH100Sms);
    EXPECT_GE(s, prev) << "T " << t;
    prev = s;
  }
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 100, kH100Sms), 1) << "short sequences are not split";
}

TEST(DenseDecodePlan, NonPositiveOrInconsistentArgumentsPlanOneSplit) {
  EXPECT_EQ(PlanDenseDecodeSplits(0, 32, 8, 4096, kH100Sms), 1);
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 0, kH100Sms), 1);
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 8, 4096, 0), 1);
  EXPECT_EQ(PlanDenseDecodeSplits(1, 30, 8, 4096, kH100Sms), 1);
  EXPECT_EQ(PlanDenseDecodeSplits(1, 32, 0, 4096, kH100Sms), 1);
}

TEST(DenseDecodePlan, SplitRangesTileTheSequenceInAlignedChunks) {
  std::mt19937 rng(2);
  for (int i = 0; i < 5000; ++i) {
    const int t = rng() % 140000, s = 1 + rng() % kDenseDecodeMaxSplits;
    int covered = 0;
    bool empty_seen = false;
    for (int sp = 0; sp < s; ++sp) {
      int b = -1, e = -1;
      DenseDecodeSplitRange(t, s, sp, &b, &e);
      ASSERT_EQ(b, covered) << "t " << t << " S " << s << " split " << sp;
      ASSERT_LE(b, e);
      ASSERT_EQ(b % kDenseDecodeSplitAlign == 0 || b == t, true);
      if (e == b) empty_seen = true;
      ASSERT_FALSE(empty_seen && e > b) << "a non-empty split after an empty one";
      covered = e;
    }
    ASSERT_EQ(covered, t);
  }
}

TEST(DenseDecodePlan, WorkspaceBytesMatchPartialLayouts) {
  const DenseDecodeWorkspaceBytes w = DenseDecodeWorkspace(3, 32, 7, 128);
  EXPECT_EQ(w.partial_out, 3u * 32 * 7 * 128 * 4);
  EXPECT_EQ(w.partial_lse, 3u * 32 * 7 * 4);
  const DenseDecodeWorkspaceBytes none = DenseDecodeWorkspace(3, 32, 1, 128);
  EXPECT_EQ(none.partial_out, 0u);
  EXPECT_EQ(none.partial_lse, 0u);
}

TEST(FastDivmod, MatchesIntegerDivision) {
  std::mt19937 rng(3);
  for (int d : {1, 2, 3, 5, 7, 16, 17, 64, 100, 1000, 65537, (1 << 30) - 1, (1 << 30) + 3}) {
    const FastDivmod f(d);
    for (uint32_t n : {0u, 1u, 2u, static_cast<uint32_t>(d) - 1, static_cast<uint32_t>(d),
                       static_cast<uint32_t>(d) + 1, 0x7fffffffu, 0x7ffffffeu}) {
      uint32_t q = 0, r = 0;
      f.DivMod(n, &q, &r);
      ASSERT_EQ(q, n / d) << n << " / " << d;
      ASSERT_EQ(r, n % d) << n << " % " << d;
    }
    for (int i = 0; i < 20000; ++i) {
      const uint32_t n = rng() & 0x7fffffffu;
      ASSERT_EQ(f.Div(n), n / d) << n << " / " << d;
    }
  }
}

TEST(HalfBits, ConversionsRoundToNearestEvenAndRoundTrip) {
  EXPECT_EQ(FloatToBf16Bits(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16Bits(1.0f + 1.0f / 256), 0x3f80);  // tie, to even
  EXPECT_EQ(FloatToBf16Bits(1.0f + 3.0f / 256), 0x3f82);  // tie, to even (up)
  EXPECT_TRUE(std::isnan(Bf16BitsToFloat(FloatToBf16Bits(NAN))));
  EXPECT_EQ(FloatToHalfBits(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalfBits(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalfBits(65520.0f), 0x7c00);               // rounds to inf
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToHalfBits(std::ldexp(1.0f, -26)), 0x0000);  // below half of it
  EXPECT_TRUE(std::isnan(HalfBitsToFloat(FloatToHalfBits(NAN))));
  for (uint32_t h = 0; h < 0x10000; ++h) {  // every non-NaN value survives x -> float -> x
    const uint16_t bits = static_cast<uint16_t>(h);
    if ((bits & 0x7c00) != 0x7c00 || (bits & 0x3ff) == 0) {
      ASSERT_EQ(FloatToHalfBits(HalfBitsToFloat(bits)), bits) << "half " << std::hex << h;
    }
    if ((bits & 0x7f80) != 0x7f80 || (bits & 0x7f) == 0) {
      ASSERT_EQ(FloatToBf16Bits(Bf16BitsToFloat(bits)), bits) << "bf16 " << std::hex << h;
    }
  }
}

}  // namespace
}  // namespace kvstream
