// EntmaxKV (top-k, alpha 1) on the bundled real model through the engine
// (CPU, twins): with a token budget covering the prompt it computes what
// dense computes (same greedy tokens); with a small budget the generation
// runs and the report says what fraction of dense's K/V bytes was read.
// Skips while "entmax_kv" is not in the engine's registry.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

std::vector<int32_t> LongPrompt(const Tokenizer& tok) {
  std::string text;
  for (int i = 0; i < 12; ++i) {
    text += "Chapter " + std::to_string(i + 1) +
            ". The river kept its own calendar: it rose in spring, slowed in summer, and in the autumn the "
            "villagers counted the boats that came down from the mountains. ";
  }
  text += "At the end of the year the elders wrote down";
  return tok.Encode(text, true);
}

GenerateSpec EntmaxSpec(GenerateSpec s, std::map<std::string, KnobValue> knobs) {
  s.kv.strategy = "entmax_kv";
  s.kv.knobs = std::move(knobs);
  return s;
}

#define KV_REQUIRE_ENTMAX(result)                                                                  \
  if (!(result).ok() && (result).status().code() == absl::StatusCode::kUnimplemented)              \
  GTEST_SKIP() << "entmax_kv is not in the registry yet: " << (result).status()

TEST(EntmaxKvModel, BudgetCoveringThePromptGivesDenseTokens) {
  KV_REQUIRE_MODEL(engine);
  GenerateSpec dense = testing::GreedySpec(LongPrompt(engine->tokenizer()), 32);
  auto e = engine->GenerateBatch({EntmaxSpec(dense, {{"token_budget", int64_t{4096}}})});
  KV_REQUIRE_ENTMAX(e);
  auto d = engine->GenerateBatch({dense});
  ASSERT_TRUE(d.ok() && e.ok()) << d.status() << e.status();
  EXPECT_EQ((*e)[0].token_ids, (*d)[0].token_ids);
  for (size_t i = 0; i < (*d)[0].logprobs.size(); ++i) {
    EXPECT_NEAR((*e)[0].logprobs[i], (*d)[0].logprobs[i], 2e-4) << "token " << i;
  }
  const CacheReport& r = (*e)[0].cache;
  EXPECT_EQ(r.strategy, "entmax_kv");
  EXPECT_EQ(r.tokens_held, r.tokens_seen);
  EXPECT_DOUBLE_EQ(r.stats.at("read_fraction"), 1.0);
  EXPECT_LT(r.compression_ratio, 1.0);  // K/V + stats: more than dense (§3)
}

TEST(EntmaxKvModel, SmallBudgetRunsAndReportsTheReadFraction) {
  KV_REQUIRE_MODEL(engine);
  const std::vector<int32_t> prompt = LongPrompt(engine->tokenizer());
  GenerateSpec spec = EntmaxSpec(testing::GreedySpec(prompt, 32), {{"token_budget", int64_t{64}}});
  auto e = engine->GenerateBatch({spec});
  KV_REQUIRE_ENTMAX(e);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ((*e)[0].token_ids.size(), 32u);
  const CacheReport& r = (*e)[0].cache;
  EXPECT_EQ(r.strategy, "entmax_kv");
  const double f = r.stats.at("read_fraction");
  EXPECT_GT(f, 0.0);
  EXPECT_LT(f, 0.6) << "prompt of " << prompt.size() << " tokens, budget 64";
  EXPECT_GT(r.stats.at("dense_fallback_steps"), 0.0);  // the 2 dense layers
  EXPECT_LE(r.stats.at("mass_error_max"), 1e-4);
  RecordProperty("read_fraction", std::to_string(f));
  RecordProperty("prompt_tokens", std::to_string(prompt.size()));
}

TEST(EntmaxKvModel, MixedWithDenseInOneBatchGivesTheSameTokensAsAlone) {
  KV_REQUIRE_MODEL(engine);
  GenerateSpec dense = testing::GreedySpec(LongPrompt(engine->tokenizer()), 16);
  GenerateSpec ent = EntmaxSpec(dense, {{"token_budget", int64_t{64}}});
  auto alone = engine->GenerateBatch({ent});
  KV_REQUIRE_ENTMAX(alone);
  auto mixed = engine->GenerateBatch({dense, ent});
  ASSERT_TRUE(alone.ok() && mixed.ok()) << alone.status() << mixed.status();
  EXPECT_EQ((*mixed)[1].token_ids, (*alone)[0].token_ids);
}

// An engine whose dense runs over the paged pool (as on CUDA): EntmaxKV
// draws its pages from the same pool and still follows dense.
TEST(EntmaxKvModel, OverThePagedDensePoolFollowsDense) {
  if (!std::filesystem::exists(testing::DefaultModelPath())) GTEST_SKIP() << "no model";
  EngineOptions o;
  o.model_path = testing::DefaultModelPath();
  o.device = "cpu";
  o.paged_dense = true;
  auto engine = Engine::Load(o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  GenerateSpec dense = testing::GreedySpec(LongPrompt((*engine)->tokenizer()), 16);
  auto e = (*engine)->GenerateBatch({EntmaxSpec(dense, {{"token_budget", int64_t{4096}}})});
  KV_REQUIRE_ENTMAX(e);
  auto mixed = (*engine)->GenerateBatch({dense, EntmaxSpec(dense, {{"token_budget", int64_t{64}}})});
  ASSERT_TRUE(e.ok() && mixed.ok()) << e.status() << mixed.status();
  EXPECT_EQ((*e)[0].token_ids, (*mixed)[0].token_ids);
  EXPECT_EQ((*mixed)[1].token_ids.size(), 16u);
}

}  // namespace
}  // namespace kvstream
