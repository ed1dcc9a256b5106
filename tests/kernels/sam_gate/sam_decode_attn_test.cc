// CPU twin of sam_decode_attn (sam_gate.md §4 decode step 3, §9 test 5):
// kept heads equal a naive fp64 softmax over the ring_dequant rows, split-K
// equals one split, dropped heads give exactly v_t (SELF) or 0 (ZERO), and a
// batch with mixed regimes equals each sequence alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/sam_gate/sam_decode_attn.h"
#include "kernels/sam_gate/sam_ring_io.h"
#include "tests/kernels/sam_gate/sam_test_ring.h"

namespace kvstream {
namespace {

using testing::RandomValues;
using testing::SamRingSpec;
using testing::SamTestRing;

// Fills ring r with a prompt of T tokens then `steps` decode tokens (fp32 K/V).
void Fill(SamTestRing& r, int T, int steps, std::mt19937* rng) {
  const int Hk = r.spec.num_kv_heads, D = r.spec.head_dim;
  auto write = [&](int first, int n, int32_t len) {
    std::vector<uint8_t> k = RandomValues(size_t(n) * Hk * D, KvDType::kFp32, rng);
    std::vector<uint8_t> v = RandomValues(size_t(n) * Hk * D, KvDType::kFp32, rng);
    std::vector<int32_t> pos(n);
    for (int i = 0; i < n; ++i) pos[i] = first + i;
    SamKvWriteParams p;
    p.k = k.data(), p.v = v.data(), p.pos = pos.data(), p.seq_len = &len, p.rings = &r.desc;
    p.num_rows = n, p.num_seqs = 1, p.num_kv_heads = Hk, p.head_dim = D, p.dtype = KvDType::kFp32;
    ASSERT_TRUE(SamKvWriteRef(p));
  };
  write(0, T, T);
  for (int t = T; t < T + steps; ++t) write(t, 1, t + 1);
}

struct AttnRun {
  std::vector<float> out, partial_out, partial_lse;
};

AttnRun Attend(const std::vector<SamRingDesc>& rings, const std::vector<float>& q, const std::vector<float>& v_new,
           const SamRingSpec& s, int splits, float scale) {
  const int B = static_cast<int>(rings.size()), H = s.num_heads, D = s.head_dim;
  AttnRun r;
  r.out.assign(size_t(B) * H * D, NAN);
  r.partial_out.assign(size_t(B) * H * splits * D, NAN);
  r.partial_lse.assign(size_t(B) * H * splits, NAN);
  SamDecodeAttnParams p;
  p.rings = rings.data(), p.q = q.data(), p.v_new = v_new.data(), p.out = r.out.data();
  p.partial_out = r.partial_out.data(), p.partial_lse = r.partial_lse.data();
  p.num_seqs = B, p.num_heads = H, p.num_kv_heads = s.num_kv_heads, p.head_dim = D;
  p.num_splits = splits, p.scale = scale, p.dtype = KvDType::kFp32;
  EXPECT_TRUE(SamDecodeAttnRef(p)) << SamDecodeAttnValidate(p);
  return r;
}

std::vector<float> Floats(const std::vector<uint8_t>& b) {
  std::vector<float> f(b.size() / 4);
  std::memcpy(f.data(), b.data(), b.size());
  return f;
}

TEST(SamDecodeAttn, KeptHeadsMatchNaiveSoftmaxOverDequantizedRows) {
  std::mt19937 rng(11);
  for (int bits : {4, 8, 16}) {
    for (int D : {64, 128}) {
      SamRingSpec s;
      s.bits = bits, s.head_dim = D, s.window = 37, s.sinks = 3, s.num_heads = 12, s.num_kv_heads = 4;
      s.kept_groups = {1, 3};
      SamTestRing ring(s);
      Fill(ring, 50, 5, &rng);
      const int H = s.num_heads, G = H / s.num_kv_heads, C = s.window + s.sinks;
      const std::vector<float> q = Floats(RandomValues(size_t(H) * D, KvDType::kFp32, &rng));
      const std::vector<float> vn = Floats(RandomValues(size_t(s.num_kv_heads) * D, KvDType::kFp32, &rng));
      const float scale = 1.0f / std::sqrt(static_cast<float>(D));
      const AttnRun run = Attend({ring.desc}, q, vn, s, 1, scale);
      std::vector<float> kh(size_t(2) * C * D), vh(kh.size());
      SamRingDequantParams dq;
      dq.ring = ring.desc, dq.k_out = kh.data(), dq.v_out = vh.data(), dq.head_dim = D;
      ASSERT_TRUE(SamRingDequantRef(dq));
      for (int h = 0; h < H; ++h) {
        const int j = ring.head_ring_group[h];
        if (j < 0) continue;
        std::vector<double> z(C), o(D, 0.0);
        double mx = -INFINITY, l = 0.0;
        for (int sl = 0; sl < C; ++sl) {
          double dot = 0.0;
          for (int c = 0; c < D; ++c) dot += double(q[h * D + c]) * kh[(size_t(j) * C + sl) * D + c];
          z[sl] = dot * scale;
          mx = std::max(mx, z[sl]);
        }
        for (int sl = 0; sl < C; ++sl) {
          const double w = std::exp(z[sl] - mx);
          l += w;
          for (int c = 0; c < D; ++c) o[c] += w * vh[(size_t(j) * C + sl) * D + c];
        }
        double num = 0.0, den = 0.0;
        for (int c = 0; c < D; ++c) {
          num += std::pow(o[c] / l - run.out[h * D + c], 2);
          den += std::pow(o[c] / l, 2);
        }
        EXPECT_LE(std::sqrt(num / den), 1e-6) << "b" << bits << " D" << D << " h" << h << " G" << G;
      }
    }
  }
}

TEST(SamDecodeAttn, SplitKEqualsOneSplitAndWritesPartials) {
  std::mt19937 rng(12);
  SamRingSpec s;
  s.bits = 8, s.head_dim = 128, s.window = 97, s.sinks = 4, s.kept_groups = {0, 1, 2, 3};
  SamTestRing ring(s);
  Fill(ring, 30, 3, &rng);  // ring not full: trailing splits see only empty slots
  const std::vector<float> q = Floats(RandomValues(size_t(s.num_heads) * 128, KvDType::kFp32, &rng));
  const std::vector<float> vn(size_t(s.num_kv_heads) * 128, 0.0f);
  const AttnRun one = Attend({ring.desc}, q, vn, s, 1, 0.09f);
  for (int S : {2, 5, 16}) {
    const AttnRun many = Attend({ring.desc}, q, vn, s, S, 0.09f);
    for (size_t i = 0; i < one.out.size(); ++i) ASSERT_NEAR(many.out[i], one.out[i], 1e-5 * (1 + std::fabs(one.out[i])));
    bool saw_empty_split = false;
    for (float lse : many.partial_lse) saw_empty_split |= std::isinf(lse) && lse < 0;
    EXPECT_TRUE(saw_empty_split) << "S=" << S << ": slots past 33 are empty, their splits have lse -inf";
  }
}

TEST(SamDecodeAttn, DroppedHeadsGiveExactlyVtOrZero) {
  std::mt19937 rng(13);
  for (SamDroppedHeadMode mode : {SamDroppedHeadMode::kSelf, SamDroppedHeadMode::kZero}) {
    SamRingSpec s;
    s.bits = 4, s.kept_groups = {2}, s.dropped_mode = mode;
    SamTestRing ring(s);
    Fill(ring, 10, 1, &rng);
    const int H = s.num_heads, D = s.head_dim, G = H / s.num_kv_heads;
    const std::vector<float> q = Floats(RandomValues(size_t(H) * D, KvDType::kFp32, &rng));
    const std::vector<float> vn = Floats(RandomValues(size_t(s.num_kv_heads) * D, KvDType::kFp32, &rng));
    const AttnRun run = Attend({ring.desc}, q, vn, s, 3, 0.125f);
    for (int h = 0; h < H; ++h) {
      if (h / G == 2) continue;
      for (int c = 0; c < D; ++c) {
        const float want = mode == SamDroppedHeadMode::kSelf ? vn[(h / G) * D + c] : 0.0f;
        ASSERT_EQ(run.out[h * D + c], want) << "h" << h;
      }
    }
  }
}

TEST(SamDecodeAttn, BatchOfMixedRegimesEqualsEachSequenceAlone) {
  std::mt19937 rng(14);
  SamRingSpec a, b;
  a.bits = 4, a.window = 16, a.kept_groups = {0, 3};
  b.bits = 16, b.window = 8, b.sinks = 2, b.kept_groups = {0, 1, 2, 3}, b.dropped_mode = SamDroppedHeadMode::kZero;
  SamTestRing ra(a), rb(b);
  Fill(ra, 40, 2, &rng);
  Fill(rb, 5, 1, &rng);
  const int H = a.num_heads, D = a.head_dim, Hk = a.num_kv_heads;
  const std::vector<float> q = Floats(RandomValues(size_t(2) * H * D, KvDType::kFp32, &rng));
  const std::vector<float> vn = Floats(RandomValues(size_t(2) * Hk * D, KvDType::kFp32, &rng));
  const AttnRun both = Attend({ra.desc, rb.desc}, q, vn, a, 2, 0.125f);
  const AttnRun only_a = Attend({ra.desc}, std::vector<float>(q.begin(), q.begin() + H * D),
                            std::vector<float>(vn.begin(), vn.begin() + Hk * D), a, 2, 0.125f);
  const AttnRun only_b = Attend({rb.desc}, std::vector<float>(q.begin() + H * D, q.end()),
                            std::vector<float>(vn.begin() + Hk * D, vn.end()), b, 2, 0.125f);
  for (int i = 0; i < H * D; ++i) {
    ASSERT_EQ(both.out[i], only_a.out[i]);
    ASSERT_EQ(both.out[H * D + i], only_b.out[i]);
  }
}

TEST(SamDecodeAttn, PlannerAndValidation) {
  EXPECT_EQ(PlanSamDecodeSplits(1, 32, 16, 132), 1);     // one split's worth of slots
  EXPECT_EQ(PlanSamDecodeSplits(1, 32, 128, 132), 1);    // a 128-slot ring: one round of one CTA
  EXPECT_EQ(PlanSamDecodeSplits(1, 32, 512, 132), 4);    // 128 slots per split
  EXPECT_EQ(PlanSamDecodeSplits(1, 8, 8192, 132), 33);   // fill two waves
  EXPECT_EQ(PlanSamDecodeSplits(64, 32, 4096, 132), 1);  // batch already fills the GPU
  SamDecodeAttnParams p;
  p.num_seqs = 1, p.num_heads = 6, p.num_kv_heads = 4, p.head_dim = 64, p.scale = 1.0f;
  EXPECT_STREQ(SamDecodeAttnValidate(p), "num_heads must be a multiple of num_kv_heads (>= 1) and <= 256");
  p.num_heads = 8;
  int dummy = 0;
  p.num_seqs = 0;    // (the null checks of the row pointers need rows)
  p.k_new = &dummy;  // fused append without positions
  EXPECT_STREQ(SamDecodeAttnValidate(p), "pos must be non-null when k_new is set (fused append)");
}

// The fused append (k_new set) is sam_kv_write of each sequence's row at its
// position and then the attention: rings and outputs equal the two calls
// made apart; a padded row (pos < 0) writes nothing.
TEST(SamDecodeAttn, FusedAppendEqualsWriteThenAttend) {
  std::mt19937 rng(44);
  SamRingSpec s;
  s.num_heads = 8, s.num_kv_heads = 4, s.head_dim = 64, s.bits = 4, s.window = 12, s.sinks = 2;
  const int B = 3, H = s.num_heads, Hk = s.num_kv_heads, D = s.head_dim;
  SamTestRing fa(s), fb(s), fc(s), sa(s), sb(s);  // f*: fused, s*: apart (same contents)
  for (SamTestRing* r : {&fa, &sa}) {
    rng.seed(45);
    Fill(*r, 30, 0, &rng);  // a full ring: the append evicts a slot
  }
  for (SamTestRing* r : {&fb, &sb}) {
    rng.seed(46);
    Fill(*r, 1, 0, &rng);
  }
  Fill(fc, 5, 0, &rng);
  const std::vector<uint8_t> c_before = fc.k;
  const std::vector<float> q = Floats(RandomValues(size_t(B) * H * D, KvDType::kFp32, &rng));
  const std::vector<float> kn = Floats(RandomValues(size_t(B) * Hk * D, KvDType::kFp32, &rng));
  const std::vector<float> vn = Floats(RandomValues(size_t(B) * Hk * D, KvDType::kFp32, &rng));
  const std::vector<int32_t> pos = {30, 1, -1};  // c is a padded row

  // Apart: the write (rows a and b), then the attention.
  const std::vector<int32_t> row_seq = {0, 1}, seq_len = {31, 2};
  const std::vector<SamRingDesc> apart = {sa.desc, sb.desc};
  SamKvWriteParams w;
  w.k = kn.data(), w.v = vn.data(), w.pos = pos.data(), w.row_seq = row_seq.data(), w.seq_len = seq_len.data();
  w.rings = apart.data(), w.num_rows = 2, w.num_seqs = 2, w.num_kv_heads = Hk, w.head_dim = D;
  w.dtype = KvDType::kFp32;
  ASSERT_TRUE(SamKvWriteRef(w));
  const AttnRun want = Attend({sa.desc, sb.desc, fc.desc}, q, vn, s, 1, 0.125f);

  const std::vector<SamRingDesc> fused = {fa.desc, fb.desc, fc.desc};
  std::vector<float> out(size_t(B) * H * D, NAN);
  SamDecodeAttnParams p;
  p.rings = fused.data(), p.q = q.data(), p.v_new = vn.data(), p.k_new = kn.data(), p.pos = pos.data();
  p.out = out.data(), p.num_seqs = B, p.num_heads = H, p.num_kv_heads = Hk, p.head_dim = D;
  p.num_splits = 1, p.scale = 0.125f, p.dtype = KvDType::kFp32;
  ASSERT_TRUE(SamDecodeAttnRef(p));
  EXPECT_EQ(fa.k, sa.k);
  EXPECT_EQ(fa.v, sa.v);
  EXPECT_EQ(fa.slot_pos, sa.slot_pos);
  EXPECT_EQ(fb.k, sb.k);
  EXPECT_EQ(fb.slot_pos, sb.slot_pos);
  EXPECT_EQ(fc.k, c_before);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], want.out[i]) << i;
}

}  // namespace
}  // namespace kvstream
