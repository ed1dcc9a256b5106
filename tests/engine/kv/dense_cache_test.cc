// The dense cache attends exactly: its output equals a naive fp64 causal GQA
// attention over all tokens appended so far, whatever the chunking.
#include "engine/kv/dense/dense_cache.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace kvstream {
namespace {

// q [H, n, D] at positions past..past+n-1; keys/values [Hkv, T, D].
at::Tensor NaiveAttention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t past) {
  const int64_t H = q.size(0), n = q.size(1), D = q.size(2), Hkv = keys.size(0), T = keys.size(1);
  at::Tensor out = at::zeros({H, n, D}, at::kDouble);
  at::Tensor qd = q.to(at::kDouble), kd = keys.to(at::kDouble), vd = values.to(at::kDouble);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t kh = h / (H / Hkv);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t visible = past + i + 1;
      at::Tensor s = at::matmul(kd[kh].narrow(0, 0, visible), qd[h][i]) / std::sqrt(static_cast<double>(D));
      at::Tensor p = at::softmax(s, 0);
      out[h][i] = at::matmul(p, vd[kh].narrow(0, 0, visible));
    }
  }
  (void)T;
  return out;
}

void CheckChunking(int64_t H, int64_t Hkv, int64_t D, std::vector<int64_t> chunks) {
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = H;
  g.n_kv_heads = Hkv;
  g.head_dim = D;
  g.context_length = 8192;
  DenseStrategy strategy(g);
  int64_t total = 0;
  for (int64_t c : chunks) total += c;
  StrategyConfig config;
  config.max_tokens = total;
  auto cache = strategy.Open(config);
  ASSERT_TRUE(cache.ok());
  at::manual_seed(static_cast<uint64_t>(H * 1000 + D));
  at::Tensor K = at::randn({Hkv, total, D}), V = at::randn({Hkv, total, D});
  int64_t past = 0;
  for (int64_t n : chunks) {
    at::Tensor q = at::randn({H, n, D});
    for (int64_t layer = 0; layer < 2; ++layer) {
      SeqStep step{past, n, true, false};
      auto o = (*cache)->Forward(layer, q, K.narrow(1, past, n), V.narrow(1, past, n), step, StepContext{});
      ASSERT_TRUE(o.ok()) << o.status();
      at::Tensor want = NaiveAttention(q, K.narrow(1, 0, past + n), V.narrow(1, 0, past + n), past);
      const double err = (o->to(at::kDouble) - want).abs().max().item<double>();
      const double scale = want.abs().max().item<double>();
      EXPECT_LT(err, 1e-4 * std::max(1.0, scale)) << "H=" << H << " Hkv=" << Hkv << " n=" << n << " past=" << past;
    }
    past += n;
  }
  // Growth stops at the request's max_tokens, so what is held equals what
  // admission predicted.
  const int64_t blocks = (total + DenseStrategy::kBlockTokens - 1) / DenseStrategy::kBlockTokens;
  EXPECT_EQ((*cache)->BytesHeld(), 2 * 2 * Hkv * blocks * DenseStrategy::kBlockTokens * D * 4);
  EXPECT_EQ(strategy.PredictBytes(config, total, 0), (*cache)->BytesHeld());
}

TEST(DenseCache, MatchesNaiveAttentionGqaGroupsOneThreeFour) {
  CheckChunking(4, 4, 64, {5, 1, 1});
  CheckChunking(9, 3, 64, {54, 1, 43, 1});
  CheckChunking(8, 2, 128, {97, 1, 1, 200});
}

TEST(DenseCache, GrowsAcrossBlockBoundary) { CheckChunking(9, 3, 64, {255, 1, 1, 300}); }

TEST(DenseCache, RejectsKnobs) {
  KvGeometry g;
  g.n_layers = 1;
  g.n_heads = g.n_kv_heads = 1;
  g.head_dim = 64;
  DenseStrategy s(g);
  StrategyConfig c;
  c.knobs["window"] = int64_t{4};
  absl::Status st = s.Validate(c);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("kv_compression.dense"), std::string::npos);
}

}  // namespace
}  // namespace kvstream
