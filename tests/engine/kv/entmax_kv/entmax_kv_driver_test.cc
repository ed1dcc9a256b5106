// EntmaxKvStrategy on a synthetic geometry (CPU, twins): prefill chunks plus
// decode steps through SequenceCache::Forward, against dense causal attention
// over the same K/V (entmax_kv.md §9 (4): budget >= context -> equals dense),
// the report's counts with a small budget, and PredictBytes == bytes held.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/entmax_kv/entmax_kv_strategy.h"

namespace kvstream {
namespace {

KvGeometry Geo(int64_t H = 6, int64_t Hkv = 2, int64_t D = 64) {
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = H;
  g.n_kv_heads = Hkv;
  g.head_dim = D;
  g.context_length = 2048;
  g.dtype = at::kFloat;
  g.kv_pool_bytes = int64_t{64} << 20;
  return g;
}

StrategyConfig Cfg(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "entmax_kv";
  c.knobs = std::move(knobs);
  return c;
}

struct RunResult {
  double max_rel_err = 0;  // decode outputs vs dense
  double prefill_rel_err = 0;
  double topk_rel_err = 0;  // sparse decode outputs vs TopkReference
  CacheReport report;
  int64_t bytes_held = 0;
};

double RelErr(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm().clamp_min(1e-12)).item<double>();
}

// What the top-k path must compute (entmax_kv.md §4 steps 3a-5, alpha 1,
// SHARED_KV): per KV head, rank historical pages by the group max of the
// Quest bound, keep the first `sinks` pages + the best (budget - sinks) + the
// tail, softmax over exactly those tokens. q [H, 1, D], keys/values [Hkv, T, D];
// pages of P tokens.
at::Tensor TopkReference(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t budget,
                         int64_t sinks, int64_t P) {
  const int64_t H = q.size(0), Hkv = keys.size(0), T = keys.size(1), D = keys.size(2), G = H / Hkv;
  const int64_t N = (T + P - 1) / P, hist = N - 1;
  const int64_t n = std::min(budget, hist);
  at::Tensor out = at::empty({H, 1, D});
  for (int64_t g = 0; g < Hkv; ++g) {
    std::vector<int64_t> pages;
    if (budget >= hist) {
      for (int64_t p = 0; p < hist; ++p) pages.push_back(p);
    } else {
      at::Tensor kp = keys[g].narrow(0, 0, hist * P).view({hist, P, D});
      at::Tensor kmin = std::get<0>(kp.min(1)), kmax = std::get<0>(kp.max(1));  // [hist, D]
      at::Tensor qg = q.narrow(0, g * G, G).select(1, 0);                        // [G, D]
      at::Tensor pos = qg.clamp_min(0), neg = qg.clamp_max(0);
      at::Tensor u = std::get<0>((pos.matmul(kmax.t()) + neg.matmul(kmin.t())).max(0)).contiguous();  // [hist]
      const float* ud = u.const_data_ptr<float>();
      const int64_t s = std::min(sinks, n);
      for (int64_t p = 0; p < s; ++p) pages.push_back(p);
      std::vector<std::pair<float, int64_t>> rank;
      for (int64_t p = s; p < hist; ++p) rank.push_back({-ud[p], p});
      std::stable_sort(rank.begin(), rank.end());
      for (int64_t i = 0; i < n - s; ++i) pages.push_back(rank[i].second);
      std::sort(pages.begin(), pages.end());
    }
    std::vector<int64_t> tok;
    for (int64_t p : pages) for (int64_t j = 0; j < P; ++j) tok.push_back(p * P + j);
    for (int64_t j = hist * P; j < T; ++j) tok.push_back(j);
    at::Tensor idx = at::tensor(tok, at::kLong);
    at::Tensor ks = keys[g].index_select(0, idx), vs = values[g].index_select(0, idx);
    for (int64_t h = g * G; h < (g + 1) * G; ++h) {
      at::Tensor w = at::softmax(q[h][0].matmul(ks.t()) / std::sqrt(static_cast<double>(D)), 0);
      out[h][0].copy_(w.matmul(vs));
    }
  }
  return out;
}

// Prompt of `prompt` tokens in chunks of `chunk`, then `decode` steps.
RunResult Drive(const KvGeometry& g, const StrategyConfig& cfg, int64_t prompt, int64_t chunk, int64_t decode,
              uint64_t seed = 1, int64_t check_budget_pages = -1, int64_t check_sinks = 0,
              int64_t check_from_layer = 0, int64_t check_page_size = 16) {
  at::manual_seed(seed);
  EntmaxKvStrategy strat(g, g.kv_pool_bytes);
  StrategyConfig c = cfg;
  c.max_tokens = prompt + decode;
  auto open = strat.Open(c);
  EXPECT_TRUE(open.ok()) << open.status();
  RunResult r;
  if (!open.ok()) return r;
  SequenceCache* seq = open->get();
  const int64_t H = g.n_heads, Hkv = g.n_kv_heads, D = g.head_dim;
  std::vector<at::Tensor> keys(g.n_layers), values(g.n_layers);
  for (int64_t l = 0; l < g.n_layers; ++l) {
    keys[l] = at::empty({Hkv, 0, D});
    values[l] = at::empty({Hkv, 0, D});
  }
  int64_t pos = 0, step = 0;
  auto do_step = [&](int64_t n, bool is_prompt) {
    SeqStep s;
    s.start_pos = pos;
    s.n_new = n;
    s.is_prompt = is_prompt;
    s.last_prompt_chunk = is_prompt && pos + n == prompt;
    StepContext ctx;
    ctx.step = step++;
    for (int64_t l = 0; l < g.n_layers; ++l) {
      at::Tensor q = at::randn({H, n, D});
      // Keys with a per-dim offset so pages differ (a sharper ranking).
      at::Tensor k = at::randn({Hkv, n, D}) * 1.5;
      at::Tensor v = at::randn({Hkv, n, D});
      keys[l] = at::cat({keys[l], k}, 1);
      values[l] = at::cat({values[l], v}, 1);
      auto out = seq->Forward(l, q, k, v, s, ctx);
      ASSERT_TRUE(out.ok()) << out.status();
      at::Tensor ref = CausalGqaAttention(q, keys[l], values[l], pos);
      if (!is_prompt && check_budget_pages > 0 && l >= check_from_layer) {
        at::Tensor want = TopkReference(q, keys[l], values[l], check_budget_pages, check_sinks, check_page_size);
        r.topk_rel_err = std::max(r.topk_rel_err, RelErr(*out, want));
      }
      const double e = RelErr(*out, ref);
      if (is_prompt) {
        r.prefill_rel_err = std::max(r.prefill_rel_err, e);
      } else {
        r.max_rel_err = std::max(r.max_rel_err, e);
      }
    }
    ASSERT_TRUE(seq->EndStep(s, ctx).ok());
    pos += n;
  };
  while (pos < prompt) do_step(std::min(chunk, prompt - pos), true);
  for (int64_t i = 0; i < decode; ++i) do_step(1, false);
  r.report = seq->Report();
  r.bytes_held = seq->BytesHeld();
  EXPECT_EQ(r.bytes_held, strat.PredictBytes(c, prompt, decode));
  return r;
}

TEST(EntmaxKvDriver, BudgetCoveringTheContextEqualsDense) {
  // 100-token prompt in chunks of 40, then 60 decode steps across page
  // boundaries; budget 2048 >= context: K3's dense fallback, every page.
  RunResult r = Drive(Geo(), Cfg({{"dense_layers", int64_t{0}}}), 100, 40, 60);
  EXPECT_LE(r.prefill_rel_err, 1e-4);
  EXPECT_LE(r.max_rel_err, 1e-4);
  EXPECT_EQ(r.report.strategy, "entmax_kv");
  EXPECT_EQ(r.report.tokens_seen, 160);
  EXPECT_EQ(r.report.tokens_held, 160);
  EXPECT_DOUBLE_EQ(r.report.stats.at("read_fraction"), 1.0);
  EXPECT_DOUBLE_EQ(r.report.stats.at("dense_fallback_steps"), 60.0 * 2);
  EXPECT_LE(r.report.stats.at("mass_error_max"), 1e-4);
  EXPECT_LT(r.report.compression_ratio, 1.0);  // holds K/V + stats: more than dense (§3)
}

TEST(EntmaxKvDriver, BudgetEqualToTheHistoryEqualsDenseWithPerQueryHeadLists) {
  // 160 tokens at the end: 9 historical pages + tail; budget 9 pages covers it.
  RunResult r = Drive(Geo(4, 4, 128), Cfg({{"dense_layers", int64_t{0}}, {"token_budget", int64_t{144}},
                                         {"gqa_selection", std::string("PER_QUERY_HEAD")}}),
                    64, 64, 96);
  EXPECT_LE(r.max_rel_err, 1e-4);
}

TEST(EntmaxKvDriver, SmallBudgetReadsAFractionAndSaysSo) {
  // Budget of 2 pages (1 sink + 1 top page) + tail over up to 256 tokens.
  RunResult r = Drive(Geo(), Cfg({{"dense_layers", int64_t{1}}, {"token_budget", int64_t{32}}}), 192, 64, 64,
                      /*seed=*/3, /*check_budget_pages=*/2, /*check_sinks=*/1, /*check_from_layer=*/1);
  EXPECT_LE(r.prefill_rel_err, 1e-4);
  const auto& s = r.report.stats;
  EXPECT_LT(s.at("read_fraction"), 0.75);
  EXPECT_GT(s.at("read_fraction"), 0.0);
  EXPECT_GT(s.at("metadata_read_fraction"), 0.0);
  EXPECT_DOUBLE_EQ(s.at("dense_fallback_steps"), 64.0);  // layer 0 is a dense layer
  EXPECT_DOUBLE_EQ(s.at("pages_selected_max"), 16.0);  // dense layer 0 at T = 256
  EXPECT_DOUBLE_EQ(s.at("pages_selected_min"), 3.0);    // sparse layer: 2 + tail
  EXPECT_LE(s.at("mass_error_max"), 1e-4);
  EXPECT_EQ(r.report.layers.size(), 2u);
  EXPECT_EQ(r.report.layers[0].detail.rfind("dense", 0), 0u);
  EXPECT_EQ(r.report.layers[1].detail.rfind("topk", 0), 0u);
  EXPECT_DOUBLE_EQ(r.report.layers[1].stats.at("pages_selected_mean"), 3.0);
  // The sparse layer computes exact softmax over exactly the chosen pages.
  EXPECT_LE(r.topk_rel_err, 1e-4);
}

TEST(EntmaxKvDriver, TopkWithoutSinksAttendsExactlyTheBestPages) {
  RunResult r = Drive(Geo(8, 2, 128), Cfg({{"dense_layers", int64_t{0}}, {"token_budget", int64_t{64}},
                                           {"sink_pages", int64_t{0}}}),
                      300, 128, 40, /*seed=*/5, /*check_budget_pages=*/4, /*check_sinks=*/0);
  EXPECT_LE(r.topk_rel_err, 1e-4);
  EXPECT_DOUBLE_EQ(r.report.stats.at("pages_selected_mean"), 5.0);
  double tokens = 0;  // 4 pages + the tail's tokens, T = 301..340
  for (int64_t T = 301; T <= 340; ++T) tokens += 4 * 16 + (T - (T - 1) / 16 * 16);
  EXPECT_NEAR(r.report.stats.at("tokens_attended_mean"), tokens / 40, 1e-9);
}

TEST(EntmaxKvDriver, EveryPageSizeOverTheSixteenTokenPoolAttendsExactlyTheBestPages) {
  // Pages of 8 (half a pool block), 32 and 64 (2 and 4 blocks): the pool's
  // blocks stay 16 tokens; selection and attention follow the request's P.
  for (int64_t P : {8, 32, 64}) {
    RunResult r = Drive(Geo(8, 2, 128), Cfg({{"dense_layers", int64_t{0}}, {"token_budget", 4 * P},
                                             {"sink_pages", int64_t{1}}, {"page_size", P}}),
                        640, 128, 40, /*seed=*/7, /*check_budget_pages=*/4, /*check_sinks=*/1,
                        /*check_from_layer=*/0, /*check_page_size=*/P);
    EXPECT_LE(r.topk_rel_err, 1e-4) << "P " << P;
    EXPECT_DOUBLE_EQ(r.report.stats.at("pages_selected_mean"), 5.0) << "P " << P;
    EXPECT_EQ(r.report.layers[0].detail, absl::StrCat("topk: ", (680 + P - 1) / P, " pages of ", P, " tokens"));
  }
}

TEST(EntmaxKvDriver, MinContextKeepsShortContextsDense) {
  RunResult r = Drive(Geo(), Cfg({{"dense_layers", int64_t{0}}, {"token_budget", int64_t{16}},
                                {"min_context", int64_t{4096}}}),
                    100, 100, 20);
  EXPECT_LE(r.max_rel_err, 1e-4);
  EXPECT_DOUBLE_EQ(r.report.stats.at("read_fraction"), 1.0);
}

TEST(EntmaxKvDriver, SharedPoolPagesComeAndGo) {
  KvGeometry g = Geo();
  auto pool = std::make_shared<PagedKvPool>(g, int64_t{8} << 20);
  EntmaxKvStrategy strat(g, pool);
  auto other = pool->Take(3);  // another strategy's pages
  ASSERT_TRUE(other.ok()) << other.status();
  const int64_t free0 = pool->free_pages();
  {
    StrategyConfig c = Cfg({{"dense_layers", int64_t{0}}, {"token_budget", int64_t{16}}});
    auto open = strat.Open(c);
    ASSERT_TRUE(open.ok()) << open.status();
    SeqStep s;
    s.n_new = 40;
    s.is_prompt = true;
    at::Tensor q = at::randn({6, 40, 64}), k = at::randn({2, 40, 64}), v = at::randn({2, 40, 64});
    for (int64_t l = 0; l < 2; ++l) ASSERT_TRUE((*open)->Forward(l, q, k, v, s, StepContext{}).ok());
    ASSERT_TRUE((*open)->EndStep(s, StepContext{}).ok());
    EXPECT_EQ(pool->free_pages(), free0 - 3);
    SeqStep d;
    d.start_pos = 40;
    d.n_new = 1;
    for (int64_t l = 0; l < 2; ++l) {
      auto out = (*open)->Forward(l, q.narrow(1, 0, 1), k.narrow(1, 0, 1), v.narrow(1, 0, 1), d, StepContext{});
      ASSERT_TRUE(out.ok()) << out.status();
    }
  }
  EXPECT_EQ(pool->free_pages(), free0);
  pool->Give(*other);
}

TEST(EntmaxKvDriver, ValidateRefusesUnsupportedGeometry) {
  KvGeometry g = Geo(4, 2, 32);
  EntmaxKvStrategy strat(g, g.kv_pool_bytes);
  absl::Status s = strat.Validate(Cfg({}));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EntmaxKvStrategy ok(Geo(), Geo().kv_pool_bytes);
  EXPECT_EQ(ok.Validate(Cfg({{"alpha", 1.5}})).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstream
