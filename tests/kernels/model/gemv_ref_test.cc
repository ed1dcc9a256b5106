// The GEMV twin against a direct double-precision product, and its checks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/model/fused_ops.h"
#include "kernels/model/gemv.h"

namespace kvstream {
namespace {

std::vector<uint16_t> Random(size_t n, std::mt19937& rng, bool bf16) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = bf16 ? FloatToBf16Bits(g(rng)) : FloatToHalfBits(g(rng));
  return v;
}

TEST(GemvRef, MatchesDoubleProductWithBiasAndStrides) {
  std::mt19937 rng(11);
  for (bool bf16 : {true, false}) {
    for (int M : {1, 3, 8}) {
      const int N = 37, K = 72, xs = 80, ys = 41;
      auto x = Random(static_cast<size_t>(M) * xs, rng, bf16);
      auto w = Random(static_cast<size_t>(N) * K, rng, bf16);
      auto b = Random(N, rng, bf16);
      std::vector<uint16_t> y(static_cast<size_t>(M) * ys, 0xffff);
      GemvParams p;
      p.x = x.data(); p.w = w.data(); p.bias = b.data(); p.y = y.data();
      p.x_stride = xs; p.y_stride = ys; p.rows = M; p.out_features = N; p.in_features = K;
      p.dtype = bf16 ? KvDType::kBf16 : KvDType::kFp16;
      ASSERT_TRUE(GemvRef(p));
      auto f = [bf16](uint16_t v) { return bf16 ? Bf16BitsToFloat(v) : HalfBitsToFloat(v); };
      for (int m = 0; m < M; ++m) {
        for (int n = 0; n < N; ++n) {
          double want = f(b[n]);
          for (int k = 0; k < K; ++k) want += double(f(w[n * K + k])) * f(x[m * xs + k]);
          const double got = f(y[m * ys + n]);
          EXPECT_NEAR(got, want, std::abs(want) * (bf16 ? 8e-3 : 1e-3) + 1e-3) << "m " << m << " n " << n;
        }
        for (int n = N; n < ys; ++n) EXPECT_EQ(y[m * ys + n], 0xffff) << "wrote past out_features";
      }
    }
  }
}

// The fused prologue is exactly RmsNormRef (with its residual add) followed
// by the plain GEMV: same rounding points, same summation order.
TEST(GemvRef, NormPrologueEqualsRmsNormThenGemvBitwise) {
  std::mt19937 rng(5);
  for (bool with_delta : {false, true}) {
    for (int M : {1, 2}) {
      const int N = 29, K = 64;
      auto x = Random(static_cast<size_t>(M) * K, rng, true);
      auto d = Random(static_cast<size_t>(M) * K, rng, true);
      auto wn = Random(K, rng, true);
      auto w = Random(static_cast<size_t>(N) * K, rng, true);
      // Composition: residual = x (+ d), h = norm, y = h · wᵀ.
      std::vector<uint16_t> residual = x, h(static_cast<size_t>(M) * K), y_ref(static_cast<size_t>(M) * N);
      RmsNormParams rn;
      rn.x = with_delta ? d.data() : x.data();
      rn.residual = with_delta ? residual.data() : nullptr;
      rn.weight = wn.data(); rn.out = h.data(); rn.rows = M; rn.hidden = K; rn.eps = 1e-5f;
      ASSERT_TRUE(RmsNormRef(rn));
      GemvParams g;
      g.x = h.data(); g.w = w.data(); g.y = y_ref.data(); g.rows = M; g.out_features = N; g.in_features = K;
      ASSERT_TRUE(GemvRef(g));
      // Fused.
      std::vector<uint16_t> y(y_ref.size()), res_out(residual.size(), 0);
      GemvParams f = g;
      f.x = x.data(); f.y = y.data(); f.norm_weight = wn.data(); f.eps = 1e-5f;
      if (with_delta) { f.delta = d.data(); f.residual_out = res_out.data(); }
      ASSERT_TRUE(GemvRef(f));
      EXPECT_EQ(y, y_ref) << "M " << M << " delta " << with_delta;
      if (with_delta) {
        EXPECT_EQ(res_out, residual);
      }
    }
  }
}

TEST(GemvRef, RejectsBadShapesNamingTheField) {
  uint16_t buf[64] = {};
  GemvParams p;
  p.x = buf; p.w = buf; p.y = buf; p.rows = 9; p.out_features = 1; p.in_features = 8;
  EXPECT_STREQ(GemvValidate(p), "rows must be in [1, 8]");
  p.rows = 1; p.in_features = 12;
  EXPECT_STREQ(GemvValidate(p), "in_features must be a positive multiple of 8");
  p.in_features = 8; p.dtype = KvDType::kFp32;
  EXPECT_STREQ(GemvValidate(p), "dtype must be bf16 or fp16");
  EXPECT_FALSE(GemvRef(p));
  p.dtype = KvDType::kBf16; p.delta = buf;
  EXPECT_STREQ(GemvValidate(p), "delta and residual_out need norm_weight");
  p.norm_weight = buf;
  EXPECT_STREQ(GemvValidate(p), "delta and residual_out go together");
  p.residual_out = buf + 32; p.rows = 8; p.in_features = 4096;
  EXPECT_STREQ(GemvValidate(p), "norm prologue needs rows * in_features * 4 <= 48 KiB");
  p.in_features = 8; p.rows = 3; p.epilogue = GemvEpilogue::kSiluMul; p.out_features = 16;
  EXPECT_STREQ(GemvValidate(p), "epilogues need rows in [1, 2]");
  p.rows = 1; p.out_features = 12;
  EXPECT_STREQ(GemvValidate(p), "kSiluMul needs out_features (gate + up rows) a multiple of 16");
  p.epilogue = GemvEpilogue::kRope; p.head_dim = 4; p.out_features = 12; p.rope_heads = 4;
  EXPECT_STREQ(GemvValidate(p), "rope_heads must be in [0, out_features / head_dim]");
  p.rope_heads = 2;
  EXPECT_STREQ(GemvValidate(p), "kRope needs positions and inv_freq");
}

// The epilogues are, bit for bit, the ops the unfused block runs after the
// projection: GemvRef then SiluMulRef, GemvRef then RopeRef (q and k heads).
TEST(GemvRef, EpiloguesEqualTheOpAfterTheProjectionBitwise) {
  std::mt19937 rng(17);
  for (int M : {1, 2}) {
    const int K = 64;
    auto x = Random(static_cast<size_t>(M) * K, rng, true);
    // SwiGLU: N = 2I rows (gate then up), output [M, I].
    {
      const int I = 24, N = 2 * I;
      auto w = Random(static_cast<size_t>(N) * K, rng, true);
      std::vector<uint16_t> gu(static_cast<size_t>(M) * N), want(static_cast<size_t>(M) * I), got(want.size(), 0);
      GemvParams g;
      g.x = x.data(); g.w = w.data(); g.y = gu.data(); g.rows = M; g.out_features = N; g.in_features = K;
      ASSERT_TRUE(GemvRef(g));
      SiluMulParams s;
      s.gate_up = gu.data(); s.out = want.data(); s.rows = M; s.inter = I;
      ASSERT_TRUE(SiluMulRef(s));
      g.y = got.data(); g.epilogue = GemvEpilogue::kSiluMul;
      ASSERT_TRUE(GemvRef(g));
      EXPECT_EQ(got, want) << "SwiGLU, M " << M;
    }
    // RoPE: 3 q heads, 1 k head, 1 v head of D = 8.
    {
      const int H = 3, Hkv = 1, D = 8, N = (H + 2 * Hkv) * D;
      auto w = Random(static_cast<size_t>(N) * K, rng, true);
      auto b = Random(N, rng, true);
      const std::vector<int64_t> pos = {7, 1234};
      const std::vector<float> inv_freq = {1.f, 0.1f, 0.01f, 0.001f};
      std::vector<uint16_t> want(static_cast<size_t>(M) * N), got(want.size(), 0);
      GemvParams g;
      g.x = x.data(); g.w = w.data(); g.bias = b.data(); g.y = want.data();
      g.rows = M; g.out_features = N; g.in_features = K;
      ASSERT_TRUE(GemvRef(g));
      RopeParams r;
      r.qkv = want.data(); r.positions = pos.data(); r.inv_freq = inv_freq.data();
      r.rows = M; r.num_heads = H; r.num_kv_heads = Hkv; r.head_dim = D;
      ASSERT_TRUE(RopeRef(r));
      g.y = got.data(); g.epilogue = GemvEpilogue::kRope; g.positions = pos.data(); g.inv_freq = inv_freq.data();
      g.head_dim = D; g.rope_heads = H + Hkv;
      ASSERT_TRUE(GemvRef(g));
      EXPECT_EQ(got, want) << "RoPE, M " << M;
    }
  }
}

}  // namespace
}  // namespace kvstream
