// AkvConfig parsing (akv.md §5 + strategies/README.md "AKV"): defaults, the
// range of every knob named in the error, cross-field rules, enum names.
#include <gtest/gtest.h>

#include "engine/kv/akv/akv_config.h"
#include "engine/kv/akv/akv_strategy.h"

namespace kvstream {
namespace {

StrategyConfig Akv(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "akv";
  c.knobs = std::move(knobs);
  return c;
}

void ExpectError(std::map<std::string, KnobValue> knobs, const std::vector<std::string>& needles) {
  absl::StatusOr<AkvConfig> c = ParseAkvConfig(Akv(knobs), 30, 64);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& n : needles) EXPECT_NE(c.status().message().find(n), std::string::npos) << c.status() << " / " << n;
}

TEST(AkvConfig, UnsetKnobsTakeTheSpecDefaults) {
  absl::StatusOr<AkvConfig> c = ParseAkvConfig(Akv({}), 30, 64);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hot_budget, 1024);
  EXPECT_EQ(c->warm_budget, 2048);
  EXPECT_EQ(c->warm_bits, 4);
  EXPECT_EQ(c->cold_bits, 2);
  EXPECT_EQ(c->group_size, 128);
  EXPECT_TRUE(c->enable_cold_tier);
  EXPECT_EQ(c->eviction_batch_size, 64);
  EXPECT_EQ(c->initial_tokens_protected, 4);
  EXPECT_EQ(c->recent_tokens_protected, 32);
  EXPECT_FLOAT_EQ(c->importance_decay, 0.3f);
  EXPECT_EQ(c->n_anchors, 16);
  EXPECT_EQ(c->scoring, AkvScoring::kImportance);
  EXPECT_FLOAT_EQ(c->promote_threshold, 0.05f);
  EXPECT_EQ(c->prefill_chunk_tokens, 128);
  EXPECT_EQ(c->PromoteCap(1024), 16);  // min(1024/8, n_anchors)
}

TEST(AkvConfig, EveryRangeIsNamedInTheError) {
  ExpectError({{"hot_budget", int64_t{8}}}, {"kv_compression.akv.hot_budget", "[16, 65536]", "8"});
  ExpectError({{"warm_budget", int64_t{2000000}}}, {"kv_compression.akv.warm_budget", "[0, 1048576]"});
  ExpectError({{"warm_bits", int64_t{3}}}, {"kv_compression.akv.warm_bits", "2, 4, 8"});
  ExpectError({{"cold_bits", int64_t{1}}}, {"kv_compression.akv.cold_bits", "2, 4, 8"});
  ExpectError({{"group_size", int64_t{16}}}, {"kv_compression.akv.group_size", "32, 64, 128"});
  ExpectError({{"eviction_batch_size", int64_t{0}}}, {"kv_compression.akv.eviction_batch_size", "[1, 1024]"});
  ExpectError({{"importance_decay", 1.0}}, {"kv_compression.akv.importance_decay", "[0, 1)"});
  ExpectError({{"promote_threshold", 0.0}}, {"kv_compression.akv.promote_threshold", "(0, 1)"});
  ExpectError({{"attention_weight", 1.5}}, {"kv_compression.akv.attention_weight", "[0, 1]"});
  ExpectError({{"prefill_chunk_tokens", int64_t{8}}}, {"kv_compression.akv.prefill_chunk_tokens", "[16, 4096]"});
  ExpectError({{"protect_first_layers", int64_t{31}}}, {"kv_compression.akv.protect_first_layers", "[0, 30]"});
  ExpectError({{"adaptive_hot_frac", -0.1}}, {"kv_compression.akv.adaptive_hot_frac", "[0, 1]"});
  ExpectError({{"enable_promotion", int64_t{1}}}, {"kv_compression.akv.enable_promotion", "true or false"});
  ExpectError({{"hot_budget", int64_t{64}}, {"initial_tokens_protected", int64_t{40}}},
              {"kv_compression.akv.initial_tokens_protected", "[0, 32]"});
  ExpectError({{"no_such_knob", int64_t{1}}}, {"kv_compression.akv", "no_such_knob"});
}

TEST(AkvConfig, ProtectedSetsMustFitTheHotTier) {
  // IMPORTANCE: sinks occupy anchor slots.
  ExpectError({{"n_anchors", int64_t{2}}, {"initial_tokens_protected", int64_t{4}}},
              {"kv_compression.akv.initial_tokens_protected", "n_anchors"});
  // HYBRID / FIFO: sinks + recency window <= hot_budget.
  ExpectError({{"scoring_strategy", std::string("FIFO")},
               {"hot_budget", int64_t{32}},
               {"recent_tokens_protected", int64_t{30}},
               {"initial_tokens_protected", int64_t{4}}},
              {"kv_compression.akv.recent_tokens_protected", "hot_budget (32)"});
  ExpectError({{"protect_first_layers", int64_t{20}}, {"protect_last_layers", int64_t{20}}},
              {"protect_first_layers", "30 layers"});
}

TEST(AkvConfig, EnumsTakeProtoOrShortNamesAndPerChannelIsRefused) {
  auto c = ParseAkvConfig(Akv({{"scoring_strategy", std::string("AKV_SCORING_STRATEGY_HYBRID")}}), 30, 64);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scoring, AkvScoring::kHybrid);
  c = ParseAkvConfig(Akv({{"scoring_strategy", std::string("fifo")}}), 30, 64);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->scoring, AkvScoring::kFifo);
  c = ParseAkvConfig(Akv({{"scoring_strategy", std::string("AKV_SCORING_STRATEGY_UNSPECIFIED")}}), 30, 64);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->scoring, AkvScoring::kImportance);
  ExpectError({{"scoring_strategy", std::string("LRU")}}, {"kv_compression.akv.scoring_strategy", "FIFO"});
  ExpectError({{"key_quant_mode", std::string("AKV_KEY_QUANT_MODE_PER_CHANNEL")}},
              {"kv_compression.akv.key_quant_mode", "PER_TOKEN"});
}

TEST(AkvConfig, PredictBytesGrowsWithTheRequestUntilTheBudgetsBindAndMatchesOpen) {
  KvGeometry g;
  g.n_layers = 4;
  g.n_heads = 4;
  g.n_kv_heads = 2;
  g.head_dim = 64;
  g.context_length = 8192;
  AkvStrategy s(g);
  StrategyConfig c = Akv({{"hot_budget", int64_t{64}}, {"warm_budget", int64_t{128}}});
  const int64_t small = s.PredictBytes(c, 20, 10), mid = s.PredictBytes(c, 200, 10);
  const int64_t big = s.PredictBytes(c, 4000, 100), huge = s.PredictBytes(c, 8000, 100);
  EXPECT_LT(small, mid);
  EXPECT_LT(mid, big);
  // Past the budgets only the fixed tiers remain: big and huge differ by no tier.
  EXPECT_EQ(big, huge);
  // A dense 16-bit cache of 4100 tokens is far larger.
  EXPECT_LT(big * 4, 4100 * g.DenseBytesPerToken16());
  c.max_tokens = 4100;
  auto cache = s.Open(c);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ((*cache)->BytesHeld(), big);
}

}  // namespace
}  // namespace kvstream
