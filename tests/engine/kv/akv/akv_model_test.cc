// AKV on the bundled real model through the engine (akv.md §9 (3)): with the
// hot tier holding the whole context it computes what dense computes; with
// hot_budget 64 and 8-bit warm codes it keeps >= 95% of dense's greedy
// choices over 256 teacher-forced steps; in a batch mixed with dense it gives
// the same tokens as alone; with rows gone cold, the device bytes it holds are
// the bytes PredictBytes reserved and the cold tier is counted as host bytes.
#include <gtest/gtest.h>

#include "engine/kv/akv/akv_strategy.h"
#include "tests/engine/engine_fixture.h"
#include "tests/engine/runtime/direct_runner.h"

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

GenerateSpec AkvSpec(GenerateSpec s, std::map<std::string, KnobValue> knobs) {
  s.kv.strategy = "akv";
  s.kv.knobs = std::move(knobs);
  return s;
}

TEST(AkvModel, HotTierHoldingEverythingMatchesDense) {
  KV_REQUIRE_MODEL(engine);
  GenerateSpec dense = testing::GreedySpec(LongPrompt(engine->tokenizer()), 32);
  auto d = engine->GenerateBatch({dense});
  auto a = engine->GenerateBatch({AkvSpec(dense, {{"hot_budget", int64_t{4096}}})});
  ASSERT_TRUE(d.ok() && a.ok()) << d.status() << a.status();
  EXPECT_EQ((*a)[0].token_ids, (*d)[0].token_ids);
  for (size_t i = 0; i < (*d)[0].logprobs.size(); ++i) {
    EXPECT_NEAR((*a)[0].logprobs[i], (*d)[0].logprobs[i], 2e-4) << "token " << i;
  }
  const CacheReport& r = (*a)[0].cache;
  EXPECT_EQ(r.strategy, "akv");
  EXPECT_EQ(r.stats.at("tokens_warm"), 0.0);
  EXPECT_EQ(r.stats.at("demotions_hot_to_warm"), 0.0);
  EXPECT_EQ(r.tokens_held, r.tokens_seen);
}

TEST(AkvModel, SmallHotTierWith8BitWarmKeepsGreedyChoices) {
  KV_REQUIRE_MODEL(engine);
  GenerateSpec dense = testing::GreedySpec(LongPrompt(engine->tokenizer()), 256);
  auto d = engine->GenerateBatch({dense});
  ASSERT_TRUE(d.ok()) << d.status();
  // Feed dense's own tokens to AKV and compare its top choice at every step.
  GenerateSpec akv = AkvSpec(dense, {{"hot_budget", int64_t{64}}, {"warm_bits", int64_t{8}}});
  akv.teacher_forced = (*d)[0].token_ids;
  akv.top_logprobs = 1;
  std::vector<int32_t> top1;
  auto a = engine->GenerateBatch({akv}, [&](size_t, const StreamDelta& delta) {
    for (const TokenOut& t : delta.tokens) top1.push_back(t.top.empty() ? -1 : t.top[0].token_id);
  });
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ((*a)[0].token_ids, (*d)[0].token_ids);
  const auto& tops = top1;
  ASSERT_EQ(tops.size(), (*d)[0].token_ids.size());
  int match = 0;
  for (size_t i = 0; i < tops.size(); ++i) match += tops[i] == (*d)[0].token_ids[i];
  const double rate = static_cast<double>(match) / static_cast<double>(tops.size());
  EXPECT_GE(rate, 0.95) << match << " of " << tops.size();
  const CacheReport& r = (*a)[0].cache;
  EXPECT_GT(r.stats.at("demotions_hot_to_warm"), 0.0);
  EXPECT_GT(r.stats.at("tokens_warm"), 0.0);
  RecordProperty("greedy_match", std::to_string(rate));
}

TEST(AkvModel, MixedWithDenseInOneBatchGivesTheSameTokensAsAlone) {
  KV_REQUIRE_MODEL(engine);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<GenerateSpec> specs = {
      testing::GreedySpec(tok.Encode("The capital of France is", true), 20),
      AkvSpec(testing::GreedySpec(LongPrompt(tok), 20), {{"hot_budget", int64_t{32}}, {"n_anchors", int64_t{8}},
                                                         {"warm_budget", int64_t{64}}, {"eviction_batch_size", int64_t{4}}}),
      AkvSpec(testing::GreedySpec(tok.Encode("def fib(n):", true), 20), {}),
  };
  auto together = engine->GenerateBatch(specs);
  ASSERT_TRUE(together.ok()) << together.status();
  for (size_t i = 0; i < specs.size(); ++i) {
    auto alone = engine->GenerateBatch({specs[i]});
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ((*together)[i].token_ids, (*alone)[0].token_ids) << "request " << i;
    EXPECT_EQ((*together)[i].cache.strategy, i == 0 ? "dense" : "akv");
  }
  // The small-budget request used every tier: cold rows went to the host.
  const CacheReport& r = (*together)[1].cache;
  EXPECT_GT(r.stats.at("tokens_cold"), 0.0);
  EXPECT_GT(r.kv_bytes_host, 0);
}

TEST(AkvModel, DeviceBytesAreThePredictionAndColdRowsAreHostBytes) {
  KV_REQUIRE_MODEL(engine);
  const std::vector<int32_t> prompt = LongPrompt(engine->tokenizer());
  GenerateSpec spec = AkvSpec(testing::GreedySpec(prompt, 12),
                              {{"hot_budget", int64_t{32}}, {"n_anchors", int64_t{8}}, {"warm_budget", int64_t{64}},
                               {"eviction_batch_size", int64_t{4}}});
  AkvStrategy strategy(engine->model().geometry());
  StrategyConfig kv = spec.kv;
  const int64_t predicted = strategy.PredictBytes(kv, static_cast<int64_t>(prompt.size()), 12);
  int64_t device = -1, held = -1;
  auto out = testing::RunDirect(*engine, strategy, {spec}, [&](size_t, const SequenceCache& c) {
    device = c.DeviceBytesHeld();
    held = c.BytesHeld();
  });
  ASSERT_TRUE(out.ok()) << out.status();
  const CacheReport& r = (*out)[0].cache;
  ASSERT_GT(r.stats.at("tokens_cold"), 0.0) << "the prompt must overflow hot + warm";
  // The scheduler's "in use" (device) never exceeds what admission reserved.
  EXPECT_EQ(device, predicted);
  EXPECT_EQ(held - device, r.kv_bytes_host) << "the cold tier is what the cache holds beyond the device";
  EXPECT_GT(held, device);
  EXPECT_EQ(r.kv_bytes_device, device);
}

}  // namespace
}  // namespace kvstream
