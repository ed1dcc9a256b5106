// AKV on the GPU (kernels/akv launchers, bf16 hot tier, the lagged cold path
// through a copy stream and pinned memory). Skips without a CUDA device.
//  - Tier invariants hold step by step on the device, as on the CPU twins.
//  - On the real model: hot tier holding everything follows dense; hot 64 +
//    8-bit warm keeps >= 95% of dense's greedy choices; mixed with dense in
//    one batch gives the tokens it gives alone; cold rows reach the host.
//  - The cold scan takes attended cold rows back to warm on the device, and
//    serves the real model under decode graphs as it does eagerly.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "engine/kv/akv/akv_batched_decode.h"
#include "engine/kv/akv/akv_strategy.h"
#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

#define REQUIRE_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"
#define REQUIRE_CUDA_AND_MODEL()                                                           \
  REQUIRE_CUDA();                                                                          \
  if (!std::filesystem::exists(testing::DefaultModelPath())) GTEST_SKIP() << "no model"

// A bf16 geometry on device 0.
KvGeometry DeviceGeometry(int64_t layers, int64_t heads, int64_t kv_heads, int64_t head_dim) {
  KvGeometry g;
  g.n_layers = layers, g.n_heads = heads, g.n_kv_heads = kv_heads, g.head_dim = head_dim;
  g.context_length = 4096;
  g.dtype = at::kBFloat16;
  g.device = c10::Device(c10::kCUDA, 0);
  return g;
}

// An AKV cache on `g` (it keeps its own copy of the plan and knobs).
absl::StatusOr<std::unique_ptr<SequenceCache>> OpenAkv(const KvGeometry& g,
                                                      std::map<std::string, KnobValue> knobs, int64_t max_tokens) {
  StrategyConfig c;
  c.strategy = "akv";
  c.max_tokens = max_tokens;
  c.knobs = std::move(knobs);
  return AkvStrategy(g).Open(c);
}

TEST(AkvCuda, TiersPartitionSeenPositionsStepByStepOnTheDevice) {
  REQUIRE_CUDA();
  at::manual_seed(21);
  const KvGeometry g = DeviceGeometry(2, 8, 2, 128);
  auto opened = OpenAkv(g,
                        {{"hot_budget", int64_t{32}}, {"n_anchors", int64_t{8}}, {"eviction_batch_size", int64_t{4}},
                         {"warm_budget", int64_t{64}}, {"prefill_chunk_tokens", int64_t{32}}},
                        600);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto* cache = static_cast<AkvSequenceCache*>(opened->get());
  auto opt = at::TensorOptions().dtype(at::kBFloat16).device(g.device);
  std::vector<int64_t> sizes = {32, 32, 20};
  for (int i = 0; i < 400; ++i) sizes.push_back(1);
  int64_t step = 0;
  for (int64_t n : sizes) {
    SeqStep s;
    s.start_pos = cache->tokens_seen();
    s.n_new = n;
    StepContext ctx;
    ctx.step = step++;
    at::Tensor q = at::randn({n, 8, 128}, opt), k = at::randn({n, 2, 128}, opt), v = at::randn({n, 2, 128}, opt);
    for (int64_t l = 0; l < 2; ++l) {
      at::Tensor out = at::full({n, 8, 128}, NAN, opt);
      ASSERT_TRUE(cache->Attend(l, q, k, v, out, s, ctx).ok());
      ASSERT_FALSE(out.isnan().any().item<bool>()) << "step " << step;
    }
    ASSERT_TRUE(cache->EndStep(s, ctx).ok());
    if (step % 50 != 0 && n == 1) continue;  // snapshots sync: check every 50th step
    const int64_t seen = cache->tokens_seen();
    for (int layer = 0; layer < 2; ++layer) {
      const auto snap = cache->Snapshot(layer);
      std::set<int32_t> all;
      for (const auto* tier : {&snap.hot_pos, &snap.warm_pos, &snap.cold_pos}) {
        for (int32_t p : *tier) EXPECT_TRUE(all.insert(p).second) << "position " << p << " twice";
      }
      EXPECT_EQ(static_cast<int64_t>(all.size()), seen);
      EXPECT_EQ(snap.evicted, 0);
      const std::set<int32_t> hot(snap.hot_pos.begin(), snap.hot_pos.end());
      for (int64_t p = seen - 24; p < seen; ++p) EXPECT_TRUE(hot.count(static_cast<int32_t>(p))) << p;
    }
  }
  const CacheReport r = cache->Report();
  EXPECT_GT(r.stats.at("tokens_cold"), 0.0);
  EXPECT_GT(r.kv_bytes_host, 0);
  EXPECT_GT(r.stats.at("d2h_bytes"), 0.0);
  EXPECT_EQ(r.tokens_held, r.tokens_seen);
}

// The cold scan on the device (akv_cold_scan_cuda.cc): planted keys that
// went cold come back to warm once queries lean on them, within the cap, and
// the tiers still partition every seen position (nothing lost or doubled
// while rows travel through the pipeline). The CPU twin of this is
// AkvTiers.ColdScanTakesAttendedColdRowsBackToWarm.
TEST(AkvCuda, ColdScanTakesAttendedColdRowsBackToWarmOnTheDevice) {
  REQUIRE_CUDA();
  at::manual_seed(11);
  const KvGeometry g = DeviceGeometry(1, 2, 1, 64);
  auto opened = OpenAkv(g,
                        {{"hot_budget", int64_t{16}},
                         {"n_anchors", int64_t{4}},
                         {"initial_tokens_protected", int64_t{0}},
                         {"eviction_batch_size", int64_t{8}},
                         {"warm_budget", int64_t{24}},
                         {"warm_bits", int64_t{8}},
                         {"cold_bits", int64_t{8}},
                         {"group_size", int64_t{64}},
                         {"promote_max_per_step", int64_t{2}},
                         {"cold_scan_interval", int64_t{1}}},
                        300);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto* cache = static_cast<AkvSequenceCache*>(opened->get());
  auto opt = at::TensorOptions().dtype(at::kBFloat16).device(g.device);
  int64_t step = 0;
  auto run = [&](const at::Tensor& q, const at::Tensor& k) {
    SeqStep s;
    s.start_pos = cache->tokens_seen();
    s.n_new = 1;
    StepContext ctx;
    ctx.step = step++;
    at::Tensor out = at::full({1, 2, 64}, NAN, opt);
    ASSERT_TRUE(cache->Attend(0, q.to(opt), k.to(opt), at::randn({1, 1, 64}).to(opt), out, s, ctx).ok());
    ASSERT_TRUE(cache->EndStep(s, ctx).ok());
  };
  at::Tensor u = at::zeros({64});
  u[3] = 1.0f;
  auto orth = [](at::Tensor x) {
    x.select(-1, 3).zero_();
    return x;
  };
  const std::set<int32_t> planted = {5, 6, 7, 8};
  const at::Tensor away = (u * -1.0f).view({1, 1, 64});
  for (int p = 0; p < 120; ++p) {
    at::Tensor k = planted.count(p) ? (u * 4.0f).view({1, 1, 64}) : orth(at::randn({1, 1, 64}) * 0.3f);
    run(orth(at::randn({1, 2, 64}) * 0.3f) + away, k);
  }
  const auto before = cache->Snapshot(0);
  for (int32_t p : planted) {
    ASSERT_TRUE(std::count(before.cold_pos.begin(), before.cold_pos.end(), p)) << "planted key " << p << " not cold";
  }
  EXPECT_EQ(cache->Report().stats.at("promotions_cold_to_warm"), 0.0) << "nothing leaned on cold rows yet";
  const at::Tensor q = (u * 6.0f).view({1, 1, 64}).expand({1, 2, 64}).contiguous();
  for (int i = 0; i < 24; ++i) run(q, orth(at::randn({1, 1, 64}) * 0.3f));
  const auto after = cache->Snapshot(0);
  std::set<int32_t> back;
  for (const auto* tier : {&after.hot_pos, &after.warm_pos}) {
    for (int32_t p : *tier) {
      if (planted.count(p)) back.insert(p);
    }
  }
  EXPECT_GE(back.size(), 2u) << "planted rows back in hot or warm";
  const CacheReport r = cache->Report();
  EXPECT_GE(r.stats.at("promotions_cold_to_warm"), 2.0);
  EXPECT_GE(r.stats.at("cold_scans"), 15.0) << "a scan every 4-5 steps (one in flight, 6 stages)";
  EXPECT_GT(r.stats.at("h2d_bytes"), 0.0);
  std::vector<int32_t> all;
  for (const auto* tier : {&after.hot_pos, &after.warm_pos, &after.cold_pos}) {
    all.insert(all.end(), tier->begin(), tier->end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(cache->tokens_seen()));
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], static_cast<int32_t>(i));
  EXPECT_EQ(after.evicted, 0);
}

// A 1 GiB pool: two engines share the GPU in the graph-vs-eager tests.
std::unique_ptr<Engine> CudaEngine() { return testing::LoadBundledEngine("cuda", 1, int64_t{1} << 30); }

std::vector<int32_t> LongPrompt(const Tokenizer& tok) {
  std::string text;
  for (int i = 0; i < 12; ++i) {
    text += "Chapter " + std::to_string(i + 1) +
            ". The river kept its own calendar: it rose in spring, slowed in summer, and in the autumn the "
            "villagers counted the boats that came down from the mountains. ";
  }
  return tok.Encode(text + "At the end of the year the elders wrote down", true);
}

GenerateSpec AkvSpec(GenerateSpec s, std::map<std::string, KnobValue> knobs) {
  s.kv.strategy = "akv";
  s.kv.knobs = std::move(knobs);
  return s;
}

// Tiers that move every few tokens: hot 32 with 8 anchors, warm 64, batch 4.
GenerateSpec SmallTiersSpec(const Tokenizer& tok, int32_t n) {
  return AkvSpec(testing::GreedySpec(LongPrompt(tok), n),
                 {{"hot_budget", int64_t{32}}, {"n_anchors", int64_t{8}}, {"warm_budget", int64_t{64}},
                  {"eviction_batch_size", int64_t{4}}});
}

// Two AKV requests with different budgets (the batched-decode tests).
std::vector<GenerateSpec> TwoAkvRequests(const Tokenizer& tok, int32_t n) {
  return {SmallTiersSpec(tok, n), AkvSpec(testing::GreedySpec(tok.Encode("def fib(n):", true), n),
                                          {{"hot_budget", int64_t{16}}, {"n_anchors", int64_t{4}}})};
}

TEST(AkvCuda, RealModelFollowsDenseAndKeepsGreedyChoicesWithSmallHotTier) {
  REQUIRE_CUDA_AND_MODEL();
  auto engine = CudaEngine();
  ASSERT_NE(engine, nullptr);
  GenerateSpec dense = testing::GreedySpec(LongPrompt(engine->tokenizer()), 256);
  auto d = engine->GenerateBatch({dense});
  ASSERT_TRUE(d.ok()) << d.status();
  const auto& want = (*d)[0].token_ids;

  // Hot tier holding everything: dense's choices (bf16: both kernels round
  // differently, so compare top-1 under teacher forcing, as below).
  for (const auto& [label, knobs, floor] :
       std::vector<std::tuple<std::string, std::map<std::string, KnobValue>, double>>{
           {"hot 4096", {{"hot_budget", int64_t{4096}}}, 0.98},
           {"hot 64 warm int8", {{"hot_budget", int64_t{64}}, {"warm_bits", int64_t{8}}}, 0.95}}) {
    GenerateSpec akv = AkvSpec(dense, knobs);
    akv.teacher_forced = want;
    akv.top_logprobs = 1;
    std::vector<int32_t> top1;
    auto a = engine->GenerateBatch({akv}, [&](size_t, const StreamDelta& delta) {
      for (const TokenOut& t : delta.tokens) top1.push_back(t.top.empty() ? -1 : t.top[0].token_id);
    });
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_EQ(top1.size(), want.size());
    int match = 0;
    for (size_t i = 0; i < want.size(); ++i) match += top1[i] == want[i];
    const double rate = double(match) / double(want.size());
    std::printf("[akv-cuda] %s: greedy agreement with dense %.4f (%d/%zu)\n", label.c_str(), rate, match,
                want.size());
    EXPECT_GE(rate, floor) << label;
  }
}

TEST(AkvCuda, MixedWithDenseInOneBatchFollowsEachRequestAloneAndFillsCold) {
  REQUIRE_CUDA_AND_MODEL();
  auto engine = CudaEngine();
  ASSERT_NE(engine, nullptr);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<GenerateSpec> specs = {
      testing::GreedySpec(tok.Encode("The capital of France is", true), 40),
      SmallTiersSpec(tok, 40),
      AkvSpec(testing::GreedySpec(tok.Encode("def fib(n):", true), 40), {}),
  };
  auto together = engine->GenerateBatch(specs);
  ASSERT_TRUE(together.ok()) << together.status();
  for (size_t i = 0; i < specs.size(); ++i) {
    testing::ExpectAloneAgreesOrNearTie(*engine, specs[i], (*together)[i].token_ids, "request " + std::to_string(i));
  }
  const CacheReport& r = (*together)[1].cache;
  EXPECT_EQ(r.strategy, "akv");
  EXPECT_GT(r.stats.at("tokens_cold"), 0.0);
  EXPECT_EQ(r.tokens_held, r.tokens_seen);
  EXPECT_GT(r.compression_ms, 0.0);
  std::printf("[akv-cuda] small budget report: seen %lld device %lld host %lld ratio %.2f compression_ms %.2f\n",
              static_cast<long long>(r.tokens_seen), static_cast<long long>(r.kv_bytes_device),
              static_cast<long long>(r.kv_bytes_host), r.compression_ratio, r.compression_ms);
}

// Decode steps of an AKV group replay a captured graph (one per set of
// sequences): the same tokens and logprobs as eager steps, tiers moving
// underneath (small budgets: demotions, promotions and cold spills happen
// between replays).
TEST(AkvCuda, GraphReplayEqualsEagerDecode) {
  REQUIRE_CUDA_AND_MODEL();
  auto graphs = CudaEngine();
  auto eager = testing::WithEnv("KVSTREAM_CUDA_GRAPHS", "0", [] { return CudaEngine(); });
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  const Tokenizer& tok = graphs->tokenizer();
  std::vector<GenerateSpec> specs = TwoAkvRequests(tok, 96);
  for (auto& s : specs) s.return_logprobs = true;
  auto a = graphs->GenerateBatch(specs), b = eager->GenerateBatch(specs);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  testing::ExpectGraphRunEqualsEager(*a, *b);
  for (size_t r = 0; r < specs.size(); ++r) {
    EXPECT_GT((*a)[r].cache.stats.at("demotions_hot_to_warm"), 0.0);
  }
  EXPECT_GT(graphs->model().decode_graph_replays(), 60);
  EXPECT_EQ(eager->model().decode_graph_replays(), 0);
}

// The cold scan serves the real model under decode graphs (the per-layer
// query copies are graph nodes) as it does eagerly: same tokens and
// logprobs, scans counted, nothing evicted.
TEST(AkvCuda, ColdScanGraphReplayEqualsEagerDecode) {
  REQUIRE_CUDA_AND_MODEL();
  auto graphs = CudaEngine();
  auto eager = testing::WithEnv("KVSTREAM_CUDA_GRAPHS", "0", [] { return CudaEngine(); });
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  std::vector<GenerateSpec> specs = {SmallTiersSpec(graphs->tokenizer(), 96)};
  specs[0].kv.knobs["cold_scan_interval"] = int64_t{1};
  specs[0].kv.knobs["promote_threshold"] = 0.01;
  specs[0].return_logprobs = true;
  auto a = graphs->GenerateBatch(specs), b = eager->GenerateBatch(specs);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  testing::ExpectGraphRunEqualsEager(*a, *b);
  const CacheReport& r = (*a)[0].cache;
  EXPECT_GT(r.stats.at("cold_scans"), 10.0);
  EXPECT_EQ(r.stats.at("promotions_cold_to_warm"), (*b)[0].cache.stats.at("promotions_cold_to_warm"));
  EXPECT_EQ(r.tokens_held, r.tokens_seen);
  EXPECT_GT(graphs->model().decode_graph_replays(), 60);
  std::printf("[akv-cuda] cold scan: %.0f scans, %.0f rows back to warm, h2d %.0f bytes\n",
              r.stats.at("cold_scans"), r.stats.at("promotions_cold_to_warm"), r.stats.at("h2d_bytes"));
}

// The opt-in one-launch decode (KVSTREAM_AKV_BATCHED=1, engine/kv/akv/
// akv_batched_decode.h) gives each request the model's own greedy choices:
// teacher-forced alone (one sequence: the side-stream path), every token of
// the batch is the top-1 except at near ties. (The two paths plan different
// splits, so fp32 sums round differently and a tie may part.)
TEST(AkvCuda, OneLaunchDecodeFollowsEachRequestAlone) {
  REQUIRE_CUDA_AND_MODEL();
  auto engine = CudaEngine();
  ASSERT_NE(engine, nullptr);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<GenerateSpec> specs = TwoAkvRequests(tok, 48);
  const int64_t before = AkvBatchedDecodeLayers();
  auto together = testing::WithEnv("KVSTREAM_AKV_BATCHED", "1", [&] { return engine->GenerateBatch(specs); });
  ASSERT_TRUE(together.ok()) << together.status();
  EXPECT_GE(AkvBatchedDecodeLayers() - before, engine->model().config().n_layers) << "the one-launch path never ran";
  for (size_t i = 0; i < specs.size(); ++i) {
    testing::ExpectAloneAgreesOrNearTie(*engine, specs[i], (*together)[i].token_ids, "one launch, request " +
                                                                                         std::to_string(i));
  }
}

}  // namespace
}  // namespace kvstream
