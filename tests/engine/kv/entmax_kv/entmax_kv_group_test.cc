// EntmaxKvStrategy::ForwardGroup (CPU, twins): the decode rows of a step that
// share a config go through one batched launch of each kernel; their outputs
// and reports must equal the per-sequence path's (SequenceCache::Forward) on
// the same K/V, with rows that fall back to every page, rows that rank pages,
// a row of another config between them (not batched, so the batch's rows are
// not contiguous) and page boundaries crossed during the steps.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "engine/kv/entmax_kv/entmax_kv_strategy.h"

namespace kvstream {
namespace {

KvGeometry Geo() {
  KvGeometry g;
  g.n_layers = 3;
  g.n_heads = 8;
  g.n_kv_heads = 2;
  g.head_dim = 64;
  g.context_length = 2048;
  g.dtype = at::kFloat;
  g.kv_pool_bytes = int64_t{64} << 20;
  return g;
}

StrategyConfig Cfg(int64_t budget, int64_t max_tokens) {
  StrategyConfig c;
  c.strategy = "entmax_kv";
  c.knobs = {{"token_budget", budget}, {"dense_layers", int64_t{1}}, {"sink_pages", int64_t{1}}};
  c.max_tokens = max_tokens;
  return c;
}

double RelErr(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm().clamp_min(1e-12)).item<double>();
}

TEST(EntmaxKvGroup, BatchedDecodeEqualsPerSequenceDecode) {
  const KvGeometry g = Geo();
  const int64_t H = g.n_heads, Hkv = g.n_kv_heads, D = g.head_dim, L = g.n_layers;
  // Prompts: 40 tokens (budget 64 covers the history: every page), 300 and
  // 517 (pages ranked), and 250 with another budget (its own path).
  const std::vector<int64_t> prompt = {40, 250, 300, 517};
  const std::vector<int64_t> budget = {64, 128, 64, 64};
  const int64_t decode = 24;
  EntmaxKvStrategy batched(g, g.kv_pool_bytes), single(g, g.kv_pool_bytes);
  std::vector<std::unique_ptr<SequenceCache>> a, b;
  for (size_t i = 0; i < prompt.size(); ++i) {
    auto oa = batched.Open(Cfg(budget[i], prompt[i] + decode));
    auto ob = single.Open(Cfg(budget[i], prompt[i] + decode));
    ASSERT_TRUE(oa.ok() && ob.ok()) << oa.status() << ob.status();
    a.push_back(std::move(*oa));
    b.push_back(std::move(*ob));
  }
  at::manual_seed(11);
  int64_t step = 0;
  // Prefill: the same chunks into both, one sequence at a time.
  for (size_t i = 0; i < prompt.size(); ++i) {
    SeqStep s;
    s.n_new = prompt[i];
    s.is_prompt = s.last_prompt_chunk = true;
    StepContext ctx;
    ctx.step = step++;
    for (int64_t l = 0; l < L; ++l) {
      const at::Tensor q = at::randn({H, prompt[i], D}), k = at::randn({Hkv, prompt[i], D}) * 1.5,
                       v = at::randn({Hkv, prompt[i], D});
      ASSERT_TRUE(a[i]->Forward(l, q, k, v, s, ctx).ok());
      ASSERT_TRUE(b[i]->Forward(l, q, k, v, s, ctx).ok());
    }
    ASSERT_TRUE(a[i]->EndStep(s, ctx).ok());
    ASSERT_TRUE(b[i]->EndStep(s, ctx).ok());
  }
  // Decode: all four rows in one group step of `batched`, one Forward each in `single`.
  const int64_t N = static_cast<int64_t>(prompt.size());
  std::vector<SequenceCache*> seqs;
  for (auto& c : a) seqs.push_back(c.get());
  double worst = 0;
  for (int64_t d = 0; d < decode; ++d) {
    std::vector<SeqStep> steps(prompt.size());
    for (size_t i = 0; i < prompt.size(); ++i) steps[i].start_pos = prompt[i] + d, steps[i].n_new = 1;
    StepContext ctx;
    ctx.step = step++;
    for (int64_t l = 0; l < L; ++l) {
      GroupTensors t;
      t.q = at::randn({N, H, D});
      t.k = at::randn({N, Hkv, D}) * 1.5;
      t.v = at::randn({N, Hkv, D});
      t.out = at::full({N, H, D}, NAN);
      for (int64_t i = 0; i < N; ++i) t.row_offset.push_back(i);
      ASSERT_TRUE(batched.ForwardGroup(l, seqs, steps, t, ctx).ok());
      for (int64_t i = 0; i < N; ++i) {
        auto want = b[i]->Forward(l, t.q[i].unsqueeze(1), t.k[i].unsqueeze(1), t.v[i].unsqueeze(1), steps[i], ctx);
        ASSERT_TRUE(want.ok()) << want.status();
        const at::Tensor got = t.out[i].unsqueeze(1);
        ASSERT_FALSE(got.isnan().any().item<bool>()) << "row " << i << " layer " << l << " step " << d;
        worst = std::max(worst, RelErr(got, *want));
      }
    }
    for (int64_t i = 0; i < N; ++i) {
      ASSERT_TRUE(a[i]->EndStep(steps[i], ctx).ok());
      ASSERT_TRUE(b[i]->EndStep(steps[i], ctx).ok());
    }
  }
  EXPECT_LE(worst, 1e-5);
  for (int64_t i = 0; i < N; ++i) {
    const CacheReport ra = a[i]->Report(), rb = b[i]->Report();
    EXPECT_EQ(ra.tokens_seen, rb.tokens_seen);
    for (const char* key : {"pages_selected_mean", "tokens_attended_mean", "read_fraction", "dense_fallback_steps"}) {
      EXPECT_DOUBLE_EQ(ra.stats.at(key), rb.stats.at(key)) << key << " row " << i;
    }
    EXPECT_EQ(a[i]->BytesHeld(), b[i]->BytesHeld());
  }
  // The rows really took different paths: the short one attended every page.
  EXPECT_DOUBLE_EQ(a[0]->Report().stats.at("dense_fallback_steps"), static_cast<double>(decode * L));
  EXPECT_LT(a[3]->Report().stats.at("read_fraction"), 0.6);
}

// The prepared step (what the decode graphs capture): PrepareDecode does the
// host work, ForwardGroup with decode_prepared only launches, rows padded to
// a bucket. Same outputs and reports as the per-sequence path.
TEST(EntmaxKvGroup, PreparedDecodeEqualsPerSequenceDecode) {
  const KvGeometry g = Geo();
  const int64_t H = g.n_heads, Hkv = g.n_kv_heads, D = g.head_dim, L = g.n_layers;
  const std::vector<int64_t> prompt = {40, 300, 517};
  const int64_t decode = 20, R = 4;  // 3 rows padded to 4
  EntmaxKvStrategy prepared(g, g.kv_pool_bytes), single(g, g.kv_pool_bytes);
  std::vector<std::unique_ptr<SequenceCache>> a, b;
  for (int64_t p : prompt) {
    auto oa = prepared.Open(Cfg(64, p + decode));
    auto ob = single.Open(Cfg(64, p + decode));
    ASSERT_TRUE(oa.ok() && ob.ok());
    a.push_back(std::move(*oa));
    b.push_back(std::move(*ob));
  }
  at::manual_seed(12);
  int64_t step = 0;
  for (size_t i = 0; i < prompt.size(); ++i) {
    SeqStep s;
    s.n_new = prompt[i];
    s.is_prompt = s.last_prompt_chunk = true;
    StepContext ctx;
    ctx.step = step++;
    for (int64_t l = 0; l < L; ++l) {
      const at::Tensor q = at::randn({H, prompt[i], D}), k = at::randn({Hkv, prompt[i], D}) * 1.5,
                       v = at::randn({Hkv, prompt[i], D});
      ASSERT_TRUE(a[i]->Forward(l, q, k, v, s, ctx).ok());
      ASSERT_TRUE(b[i]->Forward(l, q, k, v, s, ctx).ok());
    }
    ASSERT_TRUE(a[i]->EndStep(s, ctx).ok());
    ASSERT_TRUE(b[i]->EndStep(s, ctx).ok());
  }
  std::vector<SequenceCache*> seqs;
  for (auto& c : a) seqs.push_back(c.get());
  ASSERT_TRUE(prepared.CanPrepareDecode(seqs));
  double worst = 0;
  for (int64_t d = 0; d < decode; ++d) {
    std::vector<SeqStep> steps(prompt.size());
    for (size_t i = 0; i < prompt.size(); ++i) steps[i].start_pos = prompt[i] + d, steps[i].n_new = 1;
    StepContext ctx;
    ctx.step = step++;
    ASSERT_TRUE(prepared.PrepareDecode(seqs, steps, R, ctx).ok());
    ctx.decode_prepared = true;
    for (int64_t l = 0; l < L; ++l) {
      GroupTensors t;
      t.q = at::randn({R, H, D});
      t.k = at::randn({R, Hkv, D}) * 1.5;
      t.v = at::randn({R, Hkv, D});
      t.out = at::full({R, H, D}, NAN);
      for (int64_t i = 0; i < R; ++i) t.row_offset.push_back(i);
      ASSERT_TRUE(prepared.ForwardGroup(l, seqs, steps, t, ctx).ok());
      for (size_t i = 0; i < prompt.size(); ++i) {
        StepContext plain = ctx;
        plain.decode_prepared = false;
        auto want = b[i]->Forward(l, t.q[i].unsqueeze(1), t.k[i].unsqueeze(1), t.v[i].unsqueeze(1), steps[i], plain);
        ASSERT_TRUE(want.ok()) << want.status();
        worst = std::max(worst, RelErr(t.out[i].unsqueeze(1), *want));
      }
    }
    for (size_t i = 0; i < prompt.size(); ++i) {
      ASSERT_TRUE(a[i]->EndStep(steps[i], ctx).ok());
      ASSERT_TRUE(b[i]->EndStep(steps[i], ctx).ok());
    }
  }
  EXPECT_LE(worst, 1e-5);
  for (size_t i = 0; i < prompt.size(); ++i) {
    const CacheReport ra = a[i]->Report(), rb = b[i]->Report();
    for (const char* key : {"pages_selected_mean", "tokens_attended_mean", "read_fraction", "dense_fallback_steps"}) {
      EXPECT_DOUBLE_EQ(ra.stats.at(key), rb.stats.at(key)) << key << " row " << i;
    }
  }
  // Mixed configs cannot share a prepared step (the model then runs it eagerly).
  auto other = prepared.Open(Cfg(128, 64));
  ASSERT_TRUE(other.ok());
  seqs.push_back(other->get());
  EXPECT_FALSE(prepared.CanPrepareDecode(seqs));
}

}  // namespace
}  // namespace kvstream
