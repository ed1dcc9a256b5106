// CPU twins of sam_kv_write / sam_ring_dequant (sam_gate.md §4 step 5, §9
// tests 1, 2): round trip within the quantizer bound, constant blocks, nibble
// order, resident positions for every prompt length class plus decode steps,
// compat-mode fake quantization, bf16 rounding, padding rows and a batch that
// mixes regimes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/sam_gate/sam_ring_io.h"
#include "tests/kernels/sam_gate/sam_test_ring.h"

namespace kvstream {
namespace {

using testing::RandomValues;
using testing::SamRingSpec;
using testing::SamTestRing;

// Writes rows [0, n) of k/v (fp32, [n, Hk, D]) at positions pos into ring r.
void Write(SamTestRing& r, const std::vector<float>& k, const std::vector<float>& v, const std::vector<int32_t>& pos,
           int32_t seq_len, int fake_bits = 0) {
  SamKvWriteParams p;
  p.k = k.data();
  p.v = v.data();
  p.pos = pos.data();
  p.seq_len = &seq_len;
  p.rings = &r.desc;
  p.num_rows = static_cast<int>(pos.size());
  p.num_seqs = 1;
  p.num_kv_heads = r.spec.num_kv_heads;
  p.head_dim = r.spec.head_dim;
  p.fake_quant_bits = fake_bits;
  p.dtype = KvDType::kFp32;
  ASSERT_TRUE(SamKvWriteRef(p)) << SamKvWriteValidate(p);
}

struct Dense {
  std::vector<float> k, v;  // [n_l, C, D]
};
Dense Dequant(const SamTestRing& r) {
  const int C = r.spec.window + r.spec.sinks, n = r.desc.num_kept, D = r.spec.head_dim;
  Dense d;
  d.k.assign(size_t(n) * C * D, NAN);
  d.v.assign(d.k.size(), NAN);
  SamRingDequantParams p;
  p.ring = r.desc;
  p.k_out = d.k.data();
  p.v_out = d.v.data();
  p.head_dim = D;
  EXPECT_TRUE(SamRingDequantRef(p));
  return d;
}

std::vector<float> Floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> f(bytes.size() / 4);
  std::memcpy(f.data(), bytes.data(), bytes.size());
  return f;
}

TEST(SamRingWrite, RoundTripWithinHalfScale) {
  std::mt19937 rng(3);
  for (int D : {64, 128}) {
    for (int bits : {4, 8}) {
      for (int gs : {16, 32, 64, 128}) {
        if (gs > D) continue;
        SamRingSpec s;
        s.head_dim = D, s.bits = bits, s.group_size = gs, s.window = 24, s.sinks = 2;
        SamTestRing r(s);
        const int T = 26, Hk = s.num_kv_heads;
        std::vector<float> k = Floats(RandomValues(size_t(T) * Hk * D, KvDType::kFp32, &rng, 2.0f));
        std::vector<float> v = Floats(RandomValues(size_t(T) * Hk * D, KvDType::kFp32, &rng, 0.5f));
        std::vector<int32_t> pos(T);
        for (int i = 0; i < T; ++i) pos[i] = i;
        Write(r, k, v, pos, T);
        const Dense d = Dequant(r);
        const int C = s.window + s.sinks;
        for (int j = 0; j < r.desc.num_kept; ++j) {
          const int g = s.kept_groups[j];
          for (int i = 0; i < T; ++i) {
            const int slot = SamSlot(i, s.sinks, s.window);
            ASSERT_EQ(r.slot_pos[slot], i);
            for (int blk = 0; blk < D / gs; ++blk) {
              for (const auto* src : {&k, &v}) {
                const float* x = src->data() + (size_t(i) * Hk + g) * D + blk * gs;
                const float* xh = (src == &k ? d.k : d.v).data() + (size_t(j) * C + slot) * D + blk * gs;
                const float lo = *std::min_element(x, x + gs), hi = *std::max_element(x, x + gs);
                const float sc = HalfBitsToFloat(FloatToHalfBits((hi - lo) / ((1 << bits) - 1)));
                const float bound = 0.5f * sc + std::ldexp(std::max(std::fabs(lo), std::fabs(hi)), -9) + 1.0f / 65536;
                for (int c = 0; c < gs; ++c) ASSERT_LE(std::fabs(x[c] - xh[c]), bound) << "D" << D << " b" << bits;
              }
            }
          }
        }
      }
    }
  }
}

TEST(SamRingWrite, ConstantBlockDecodesToFp16AndNibblesAreLowFirst) {
  SamRingSpec s;
  s.head_dim = 64, s.bits = 4, s.group_size = 16, s.kept_groups = {0}, s.num_kv_heads = 1, s.num_heads = 1;
  SamTestRing r(s);
  std::vector<float> k(64), v(64, 0.1234567f);
  for (int c = 0; c < 64; ++c) k[c] = static_cast<float>(c % 16);  // group [0..15]: scale 1, min 0
  Write(r, k, v, {0}, 1);
  // Channel 2i in the low nibble of byte i, 2i+1 in the high nibble.
  EXPECT_EQ(r.k[0], 0x10);
  EXPECT_EQ(r.k[1], 0x32);
  EXPECT_EQ(r.k[7], 0xFE);
  const uint16_t* params = reinterpret_cast<const uint16_t*>(r.k.data() + 32);
  EXPECT_EQ(HalfBitsToFloat(params[0]), 1.0f);  // scale
  EXPECT_EQ(HalfBitsToFloat(params[1]), 0.0f);  // min
  const Dense d = Dequant(r);
  for (int c = 0; c < 64; ++c) {
    EXPECT_EQ(d.k[c], static_cast<float>(c % 16));
    EXPECT_EQ(d.v[c], HalfBitsToFloat(FloatToHalfBits(0.1234567f))) << "constant block decodes to fp16(x)";
  }
}

TEST(SamRingWrite, ResidentPositionsAreSinksPlusLastWindow) {
  const int W = 8, S = 3;
  for (int T : {1, S, W, W + S, 10 * W}) {
    SamRingSpec s;
    s.window = W, s.sinks = S, s.bits = 8, s.head_dim = 64;
    SamTestRing r(s);
    const int Hk = s.num_kv_heads, D = 64;
    std::vector<float> k(size_t(T) * Hk * D, 1.0f);
    std::vector<int32_t> pos(T);
    for (int i = 0; i < T; ++i) pos[i] = i;
    Write(r, k, k, pos, T);  // the whole prompt in one call
    std::vector<float> row(size_t(Hk) * D, 2.0f);
    for (int t = T; t < T + 2 * W + 1; ++t) {  // decode steps
      const auto expect_set = [&](int len) {
        std::set<int> want, got;
        for (int p = 0; p < len; ++p) {
          if (p < std::min(S, len) || p >= std::max(S, len - W)) want.insert(p);
        }
        for (int32_t sp : r.slot_pos) {
          if (sp >= 0) got.insert(sp);
        }
        EXPECT_EQ(got, want) << "T=" << T << " len=" << len;
        EXPECT_EQ(static_cast<int>(got.size()), std::min(len, W + S));
      };
      if (t == T) expect_set(T);
      Write(r, row, row, {t}, t + 1);
      expect_set(t + 1);
    }
  }
}

TEST(SamRingWrite, CompatModeStoresBf16OfDequantizedValues) {
  std::mt19937 rng(5);
  SamRingSpec s;
  s.bits = 16, s.head_dim = 128, s.group_size = 32;
  SamTestRing r(s);
  const int Hk = s.num_kv_heads, D = 128;
  std::vector<float> k = Floats(RandomValues(size_t(Hk) * D, KvDType::kFp32, &rng));
  Write(r, k, k, {0}, 1, /*fake_bits=*/8);
  const Dense d = Dequant(r);
  std::vector<uint8_t> packed(SamRowBytes(D, 8, 32));
  std::vector<float> xh(D);
  for (int j = 0; j < r.desc.num_kept; ++j) {
    const float* x = k.data() + size_t(s.kept_groups[j]) * D;
    SamEncodeRowHost(x, D, 8, 32, 0, packed.data());
    SamDecodeRowHost(packed.data(), D, 8, 32, xh.data());
    for (int c = 0; c < D; ++c) ASSERT_EQ(d.k[size_t(j) * s.window * D + c], Bf16BitsToFloat(FloatToBf16Bits(xh[c])));
  }
  // Without fake quantization a 16-bit ring holds bf16(x) (CPU decision, README).
  SamTestRing r2(s);
  Write(r2, k, k, {0}, 1);
  const Dense d2 = Dequant(r2);
  for (int c = 0; c < D; ++c) ASSERT_EQ(d2.v[c], Bf16BitsToFloat(FloatToBf16Bits(k[c])));
}

TEST(SamRingWrite, PaddingAndEmptySlotsAreLeftAlone) {
  SamRingSpec s;
  s.bits = 4, s.window = 4;
  SamTestRing r(s);
  const int D = s.head_dim, Hk = s.num_kv_heads;
  std::vector<float> k(size_t(2) * Hk * D, 1.5f);
  const std::vector<uint8_t> before = r.k;
  Write(r, k, k, {-1, -5}, 1);
  EXPECT_EQ(r.k, before);
  for (int32_t sp : r.slot_pos) EXPECT_EQ(sp, -1);
  const Dense d = Dequant(r);
  for (float x : d.k) EXPECT_EQ(x, 0.0f) << "empty slots dequantize to 0";
}

TEST(SamRingWrite, BatchMixesRegimesPerSequence) {
  std::mt19937 rng(9);
  SamRingSpec a, b;
  a.bits = 4, a.window = 8, a.kept_groups = {1};
  b.bits = 16, b.window = 4, b.sinks = 1, b.kept_groups = {0, 1, 2, 3};
  SamTestRing ra(a), rb(b), ra1(a), rb1(b);
  const int Hk = a.num_kv_heads, D = a.head_dim;
  std::vector<float> k = Floats(RandomValues(size_t(2) * Hk * D, KvDType::kFp32, &rng));
  std::vector<float> v = Floats(RandomValues(size_t(2) * Hk * D, KvDType::kFp32, &rng));
  SamRingDesc rings[2] = {ra.desc, rb.desc};
  std::vector<int32_t> pos = {20, 7}, row_seq = {0, 1}, seq_len = {21, 8};
  SamKvWriteParams p;
  p.k = k.data(), p.v = v.data(), p.pos = pos.data(), p.row_seq = row_seq.data(), p.seq_len = seq_len.data();
  p.rings = rings, p.num_rows = 2, p.num_seqs = 2, p.num_kv_heads = Hk, p.head_dim = D, p.dtype = KvDType::kFp32;
  ASSERT_TRUE(SamKvWriteRef(p));
  // Same as writing each sequence alone.
  Write(ra1, std::vector<float>(k.begin(), k.begin() + Hk * D), std::vector<float>(v.begin(), v.begin() + Hk * D),
        {20}, 21);
  Write(rb1, std::vector<float>(k.begin() + Hk * D, k.end()), std::vector<float>(v.begin() + Hk * D, v.end()), {7},
        8);
  EXPECT_EQ(ra.k, ra1.k);
  EXPECT_EQ(ra.v, ra1.v);
  EXPECT_EQ(rb.k, rb1.k);
  EXPECT_EQ(ra.slot_pos, ra1.slot_pos);
  EXPECT_EQ(rb.slot_pos, rb1.slot_pos);
}

TEST(SamRingWrite, RejectsBadParamsNamingTheField) {
  SamKvWriteParams p;
  p.num_seqs = 1, p.num_kv_heads = 2, p.head_dim = 96;
  EXPECT_STREQ(SamKvWriteValidate(p), "head_dim must be 64 or 128");
  p.head_dim = 64, p.fake_quant_bits = 2;
  EXPECT_STREQ(SamKvWriteValidate(p), "fake_quant_bits must be 0, 4 or 8");
  SamRingSpec s;
  s.bits = 5;
  SamTestRing r(s);
  EXPECT_STREQ(SamRingStorageValidate(r.desc, 4, 64), "ring.bits must be 4, 8 or 16");
}

}  // namespace
}  // namespace kvstream
