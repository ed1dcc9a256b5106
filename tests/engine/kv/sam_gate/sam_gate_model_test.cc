// SAM-Gate on the bundled real model through the engine (sam_gate.md §9
// test 6): (a) OBSTRUCTED 16-bit with a window holding everything tracks
// dense (the CPU ring stores bf16-rounded K/V, README decision) and keeps
// its greedy tokens; (b) a small window + sinks runs with bytes flat in
// context; (c) the same request twice gives the same tokens. Skips while
// the registry does not build sam_gate into the engine.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

std::vector<int32_t> Prompt(const Tokenizer& tok, int chapters) {
  std::string text;
  for (int i = 0; i < chapters; ++i) {
    text += "Chapter " + std::to_string(i + 1) +
            ". The river kept its own calendar: it rose in spring, slowed in summer, and in the autumn the "
            "villagers counted the boats that came down from the mountains. ";
  }
  text += "At the end of the year the elders wrote down";
  return tok.Encode(text, true);
}

GenerateSpec SamSpec(GenerateSpec s, std::map<std::string, KnobValue> knobs) {
  s.kv.strategy = "sam_gate";
  knobs.emplace("f_flat_max", 0.0);
  knobs.emplace("f_obs_min", 0.0);
  s.kv.knobs = std::move(knobs);
  return s;
}

#define KV_REQUIRE_SAM_GATE(engine)                                                  \
  if (!(engine)->strategies().Get("sam_gate").ok())                                  \
  GTEST_SKIP() << "sam_gate is not in this engine's registry yet"

TEST(SamGateModel, WholeContextWindowTracksDense) {
  KV_REQUIRE_MODEL(engine);
  KV_REQUIRE_SAM_GATE(engine);
  GenerateSpec dense = testing::GreedySpec(Prompt(engine->tokenizer(), 6), 24);
  auto d = engine->GenerateBatch({dense});
  auto s = engine->GenerateBatch({SamSpec(dense, {{"max_ctx_obs", int64_t{4096}}})});
  ASSERT_TRUE(d.ok() && s.ok()) << d.status() << s.status();
  EXPECT_EQ((*s)[0].token_ids, (*d)[0].token_ids);
  double worst = 0.0;
  for (size_t i = 0; i < (*d)[0].logprobs.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::abs((*s)[0].logprobs[i] - (*d)[0].logprobs[i])));
  EXPECT_LT(worst, 5e-2) << "bf16 ring on CPU";
  // The first token comes from the prefill, exact over fp32 staging (C1):
  // equal to dense. Every later difference is the ring's bf16 rounding of
  // K/V (README "SAM-Gate" decision: the CPU 16-bit ring stores bf16), about
  // 2^-9 relative per element; the §9 6(a) 1e-3 bound holds against a
  // same-rounding reference (attention level: sam_gate_cache_test) and on
  // CUDA, where dense K/V are bf16 too (sam_gate_cuda_test).
  ASSERT_FALSE((*s)[0].logprobs.empty());
  EXPECT_EQ((*s)[0].logprobs[0], (*d)[0].logprobs[0]);
  RecordProperty("max_logprob_diff_vs_dense", std::to_string(worst));
  const CacheReport& r = (*s)[0].cache;
  EXPECT_EQ(r.strategy, "sam_gate");
  EXPECT_EQ(r.tokens_held, r.tokens_seen);
  EXPECT_EQ(r.stats.at("n_obs"), static_cast<double>(r.layers.size()));
}

TEST(SamGateModel, SmallWindowBytesFlatAndDeterministic) {
  KV_REQUIRE_MODEL(engine);
  KV_REQUIRE_SAM_GATE(engine);
  const std::map<std::string, KnobValue> knobs = {
      {"max_ctx_obs", int64_t{32}}, {"num_sink_tokens", int64_t{4}}, {"obs_bits", int64_t{8}}};
  GenerateSpec shortp = SamSpec(testing::GreedySpec(Prompt(engine->tokenizer(), 2), 16), knobs);
  GenerateSpec longp = SamSpec(testing::GreedySpec(Prompt(engine->tokenizer(), 10), 16), knobs);
  auto a = engine->GenerateBatch({shortp});
  auto b = engine->GenerateBatch({longp});
  auto c = engine->GenerateBatch({longp});
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status() << c.status();
  EXPECT_EQ((*a)[0].cache.kv_bytes_device, (*b)[0].cache.kv_bytes_device);
  EXPECT_LT((*a)[0].cache.tokens_seen, (*b)[0].cache.tokens_seen);
  EXPECT_EQ((*b)[0].cache.tokens_held, 36);
  EXPECT_EQ((*b)[0].token_ids, (*c)[0].token_ids);
  EXPECT_EQ((*b)[0].logprobs, (*c)[0].logprobs);
}

TEST(SamGateModel, DefaultConfigProbesEveryLayer) {
  KV_REQUIRE_MODEL(engine);
  KV_REQUIRE_SAM_GATE(engine);
  GenerateSpec s = testing::GreedySpec(Prompt(engine->tokenizer(), 4), 8);
  s.kv.strategy = "sam_gate";
  auto a = engine->GenerateBatch({s});
  auto b = engine->GenerateBatch({s});
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  const CacheReport& r = (*a)[0].cache;
  EXPECT_EQ(r.stats.at("n_flat") + r.stats.at("n_trans") + r.stats.at("n_obs"), static_cast<double>(r.layers.size()));
  EXPECT_EQ(r.stats.at("n_probe_skipped"), 0.0);
  for (size_t l = 0; l < r.layers.size(); ++l) {
    EXPECT_FALSE(std::isnan(r.layers[l].stats.at("f"))) << l;
    EXPECT_EQ(r.layers[l].stats.at("f"), (*b)[0].cache.layers[l].stats.at("f")) << l;  // determinism (§9 6c)
  }
  EXPECT_EQ((*a)[0].token_ids, (*b)[0].token_ids);
}

}  // namespace
}  // namespace kvstream
