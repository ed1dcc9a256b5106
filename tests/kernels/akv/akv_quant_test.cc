// CPU tests of the AKV warm quantizer twins (akv.md §6, §9 test 1): golden
// packing for 2/4/8 bits, exact constant groups, zero-scale groups, rint
// ties-to-even, the reconstruction bound on random data, saturation counting,
// strided bf16 input, and dequant round trips.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/akv/akv_quant.h"
#include "kernels/common/half_bits.h"

namespace kvstream {
namespace {

struct Quantized {
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scale, zero;
  int32_t saturations = 0;
};

// Quantizes one (row, head) of fp32 values (D = x.size()) through the twin.
Quantized Quantize(const std::vector<float>& x, int bits, int group) {
  Quantized q;
  const int D = static_cast<int>(x.size());
  q.codes.assign(D * bits / 8, 0xAA);
  q.scale.assign(D / group, 0xAAAA);
  q.zero.assign(D / group, 0xAAAA);
  AkvQuantizeParams p;
  p.x = x.data();
  p.codes = q.codes.data();
  p.scale = q.scale.data();
  p.zero = q.zero.data();
  p.saturations = &q.saturations;
  p.rows = 1;
  p.num_kv_heads = 1;
  p.head_dim = D;
  p.bits = bits;
  p.group_size = group;
  p.dtype = KvDType::kFp32;
  EXPECT_TRUE(AkvQuantizeRef(p));
  return q;
}

std::vector<float> Dequantize(const Quantized& q, int D, int bits, int group) {
  std::vector<float> x(D, -1.0f);
  AkvDequantParams p;
  p.codes = q.codes.data();
  p.scale = q.scale.data();
  p.zero = q.zero.data();
  p.x = x.data();
  p.rows = 1;
  p.num_kv_heads = 1;
  p.head_dim = D;
  p.bits = bits;
  p.group_size = group;
  p.dtype = KvDType::kFp32;
  EXPECT_TRUE(AkvDequantRef(p));
  return x;
}

TEST(AkvQuant, FourBitPacksElementTwoIInTheLowNibble) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i % 16);  // lo 0, hi 15 -> scale 1, codes = x
  const Quantized q = Quantize(x, 4, 32);
  for (int grp = 0; grp < 2; ++grp) {
    EXPECT_EQ(q.scale[grp], FloatToHalfBits(1.0f));
    EXPECT_EQ(q.zero[grp], FloatToHalfBits(0.0f));
  }
  ASSERT_EQ(q.codes.size(), 32u);
  for (int b = 0; b < 32; ++b) {
    const int lo = (2 * b) % 16, hi = (2 * b + 1) % 16;
    EXPECT_EQ(q.codes[b], lo | (hi << 4)) << "byte " << b;
  }
  EXPECT_EQ(q.codes[0], 0x10);
  EXPECT_EQ(q.codes[1], 0x32);
}

TEST(AkvQuant, TwoBitPacksElementFourIInBitsOneZero) {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = static_cast<float>(i % 4);  // scale 3/3 = 1
  const Quantized q = Quantize(x, 2, 64);
  ASSERT_EQ(q.codes.size(), 16u);
  for (uint8_t b : q.codes) EXPECT_EQ(b, 0xE4);  // codes 0,1,2,3 at bits 1-0, 3-2, 5-4, 7-6
  std::vector<float> y(64, 0.0f);
  y[1] = 3.0f;  // only element 1 at the top code: byte 0 = 3 << 2
  const Quantized q2 = Quantize(y, 2, 64);
  EXPECT_EQ(q2.codes[0], 0x0C);
  for (int b = 1; b < 16; ++b) EXPECT_EQ(q2.codes[b], 0);
}

TEST(AkvQuant, EightBitStoresRawCodes) {
  std::vector<float> x(128);
  for (int i = 0; i < 128; ++i) x[i] = static_cast<float>(i);
  x[1] = 255.0f;  // range 255 -> scale exactly 1
  const Quantized q = Quantize(x, 8, 128);
  EXPECT_EQ(q.scale[0], FloatToHalfBits(1.0f));
  for (int i = 0; i < 128; ++i) EXPECT_EQ(q.codes[i], static_cast<uint8_t>(x[i])) << i;
}

TEST(AkvQuant, ConstantGroupReproducesExactly) {
  for (int bits : {2, 4, 8}) {
    std::vector<float> x(64, 1.375f);  // fp16-representable
    for (int i = 32; i < 64; ++i) x[i] = -0.0625f;
    const Quantized q = Quantize(x, bits, 32);
    EXPECT_EQ(q.scale[0], 0);
    EXPECT_EQ(q.scale[1], 0);
    for (uint8_t b : q.codes) EXPECT_EQ(b, 0);
    EXPECT_EQ(Dequantize(q, 64, bits, 32), x) << bits << " bits";
  }
}

TEST(AkvQuant, ScaleThatRoundsToZeroGivesCodeZero) {
  std::vector<float> x(64, 1.0f);
  for (int i = 0; i < 64; i += 3) x[i] = std::nextafter(1.0f, 2.0f);  // range 1.2e-7: scale < fp16 min
  const Quantized q = Quantize(x, 4, 64);
  EXPECT_EQ(q.scale[0], 0);
  for (uint8_t b : q.codes) EXPECT_EQ(b, 0);
  for (float v : Dequantize(q, 64, 4, 64)) EXPECT_EQ(v, 1.0f);
}

TEST(AkvQuant, RintRoundsHalfToEven) {
  std::vector<float> x(64, 0.0f);
  x[0] = 15.0f;  // lo 0, hi 15: scale 1, zero 0
  x[1] = 0.5f;   // -> 0
  x[2] = 1.5f;   // -> 2
  x[3] = 2.5f;   // -> 2
  x[4] = 3.5f;   // -> 4
  x[5] = 14.5f;  // -> 14
  const Quantized q = Quantize(x, 4, 64);
  const int expect[6] = {15, 0, 2, 2, 4, 14};
  for (int e = 0; e < 6; ++e) EXPECT_EQ(AkvCodeAt(q.codes.data(), e, 4), expect[e]) << "element " << e;
}

TEST(AkvQuant, ZeroIsTheRoundedMinAndCodesUseRoundedValues) {
  std::vector<float> x(64);
  std::mt19937 rng(5);
  for (float& v : x) v = std::uniform_real_distribution<float>(0.1f, 0.9f)(rng);
  x[7] = 0.1234567f;  // the min; not fp16-representable
  x[9] = 0.9f;
  const Quantized q = Quantize(x, 4, 64);
  float lo = x[0], hi = x[0];
  for (float v : x) lo = std::fmin(lo, v), hi = std::fmax(hi, v);
  EXPECT_EQ(q.zero[0], FloatToHalfBits(lo));
  EXPECT_EQ(q.scale[0], FloatToHalfBits((hi - lo) / 15.0f));
  const float mn = HalfBitsToFloat(q.zero[0]), sc = HalfBitsToFloat(q.scale[0]);
  for (int e = 0; e < 64; ++e) {
    const float r = std::nearbyint((x[e] - mn) / sc);
    EXPECT_EQ(AkvCodeAt(q.codes.data(), e, 4), static_cast<int>(std::fmin(std::fmax(r, 0.0f), 15.0f))) << e;
  }
}

// |x - x^| <= scale/2 plus what rounding zero and scale to fp16 can add
// (|zero - lo| and (2^b - 1) * |scale - exact scale|) and fp32 rounding.
TEST(AkvQuant, ReconstructionErrorWithinHalfScalePlusFp16Rounding) {
  std::mt19937 rng(11);
  for (int bits : {2, 4, 8}) {
    for (int group : {32, 64, 128}) {
      for (int trial = 0; trial < 50; ++trial) {
        std::vector<float> x(128);
        const float spread = std::pow(10.0f, std::uniform_real_distribution<float>(-3.0f, 2.0f)(rng));
        const float offset = std::uniform_real_distribution<float>(-5.0f, 5.0f)(rng);
        for (float& v : x) v = offset + spread * std::normal_distribution<float>(0.0f, 1.0f)(rng);
        const Quantized q = Quantize(x, bits, group);
        const std::vector<float> y = Dequantize(q, 128, bits, group);
        const float levels = static_cast<float>((1 << bits) - 1);
        for (int grp = 0; grp < 128 / group; ++grp) {
          float lo = x[grp * group], hi = lo;
          for (int e = grp * group; e < (grp + 1) * group; ++e) lo = std::fmin(lo, x[e]), hi = std::fmax(hi, x[e]);
          const double sc = HalfBitsToFloat(q.scale[grp]), mn = HalfBitsToFloat(q.zero[grp]);
          const double bound = sc / 2 + std::abs(mn - lo) + levels * std::abs(sc - (hi - lo) / levels) +
                               1e-6 * (std::abs(lo) + std::abs(hi));
          for (int e = grp * group; e < (grp + 1) * group; ++e)
            ASSERT_LE(std::abs(x[e] - y[e]), bound) << bits << " bits, g " << group << ", e " << e;
        }
      }
    }
  }
}

TEST(AkvQuant, ScaleAndZeroSaturateAtFp16MaxAndAreCounted) {
  std::vector<float> x(64, 0.0f);
  x[0] = -1.0e6f;  // zero overflows fp16
  x[1] = 1.0e6f;   // scale 2e6/15 overflows too
  const Quantized q = Quantize(x, 4, 32);
  EXPECT_EQ(q.zero[0], 0xfbff);   // -65504
  EXPECT_EQ(q.scale[0], 0x7bff);  // 65504
  EXPECT_EQ(q.saturations, 1);    // one group saturated; the second group is all zeros
  EXPECT_EQ(q.scale[1], 0);
}

TEST(AkvQuant, StridedBf16RowsMatchPackedFp32Rows) {
  const int rows = 3, hkv = 2, D = 128, stride = hkv * D + 24;
  std::mt19937 rng(3);
  std::vector<uint16_t> x(static_cast<size_t>(rows) * stride);
  for (uint16_t& v : x) v = FloatToBf16Bits(std::normal_distribution<float>(0.0f, 2.0f)(rng));
  AkvQuantizeParams p;
  std::vector<uint8_t> codes(rows * hkv * D / 2);
  std::vector<uint16_t> scale(rows * hkv * 2), zero(rows * hkv * 2);
  p.x = x.data();
  p.x_row_stride = stride;
  p.codes = codes.data();
  p.scale = scale.data();
  p.zero = zero.data();
  p.rows = rows;
  p.num_kv_heads = hkv;
  p.head_dim = D;
  p.bits = 4;
  p.group_size = 64;
  p.dtype = KvDType::kBf16;
  ASSERT_NE(p.x_row_stride, hkv * D) << "rows must be strided";
  ASSERT_TRUE(AkvQuantizeRef(p));
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < hkv; ++h) {
      std::vector<float> f(D);
      for (int d = 0; d < D; ++d) f[d] = Bf16BitsToFloat(x[r * stride + h * D + d]);
      const Quantized one = Quantize(f, 4, 64);
      const int sl = r * hkv + h;
      EXPECT_EQ(std::vector<uint8_t>(codes.begin() + sl * 64, codes.begin() + (sl + 1) * 64), one.codes);
      EXPECT_EQ(scale[sl * 2], one.scale[0]);
      EXPECT_EQ(zero[sl * 2 + 1], one.zero[1]);
    }
  }
}

TEST(AkvQuant, DequantRoundsToTheOutputType) {
  std::mt19937 rng(8);
  std::vector<float> x(64);
  for (float& v : x) v = std::normal_distribution<float>(0.0f, 1.0f)(rng);
  const Quantized q = Quantize(x, 8, 32);
  const std::vector<float> f = Dequantize(q, 64, 8, 32);
  std::vector<uint16_t> b(64);
  AkvDequantParams p;
  p.codes = q.codes.data();
  p.scale = q.scale.data();
  p.zero = q.zero.data();
  p.x = b.data();
  p.rows = 1;
  p.num_kv_heads = 1;
  p.head_dim = 64;
  p.bits = 8;
  p.group_size = 32;
  p.dtype = KvDType::kBf16;
  ASSERT_TRUE(AkvDequantRef(p));
  for (int i = 0; i < 64; ++i) EXPECT_EQ(b[i], FloatToBf16Bits(f[i])) << i;
}

TEST(AkvQuant, RejectsUnsupportedShapes) {
  EXPECT_TRUE(AkvQuantSupports(128, 4, 128));
  EXPECT_TRUE(AkvQuantSupports(64, 2, 32));
  EXPECT_FALSE(AkvQuantSupports(96, 4, 32)) << "head_dim 96";
  EXPECT_FALSE(AkvQuantSupports(64, 3, 32)) << "3 bits";
  EXPECT_FALSE(AkvQuantSupports(64, 4, 16)) << "group 16";
  EXPECT_FALSE(AkvQuantSupports(64, 4, 128)) << "group larger than head_dim";
  AkvQuantizeParams p;
  p.rows = 1;
  p.num_kv_heads = 1;
  p.head_dim = 64;
  p.bits = 4;
  p.group_size = 32;
  EXPECT_NE(AkvQuantizeValidate(p), nullptr) << "null buffers";
  EXPECT_FALSE(AkvQuantizeRef(p));
}

}  // namespace
}  // namespace kvstream
