// EntmaxKvConfig parsing (entmax_kv.md §5 + strategies/README.md): defaults,
// the range of every knob named in the error, enum names, and the values this
// version refuses (Gaussian selector, alpha > 1).
#include <gtest/gtest.h>

#include "engine/kv/entmax_kv/entmax_kv_config.h"

namespace kvstream {
namespace {

StrategyConfig Entmax(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "entmax_kv";
  c.knobs = std::move(knobs);
  return c;
}

void ExpectError(std::map<std::string, KnobValue> knobs, const std::vector<std::string>& needles) {
  absl::StatusOr<EntmaxKvConfig> c = ParseEntmaxKvConfig(Entmax(knobs), 30);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& n : needles) EXPECT_NE(c.status().message().find(n), std::string::npos) << c.status() << " / " << n;
}

TEST(EntmaxKvConfig, UnsetKnobsTakeTheSpecDefaults) {
  absl::StatusOr<EntmaxKvConfig> c = ParseEntmaxKvConfig(Entmax({}), 30);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->selector, EntmaxKvConfig::Selector::kTopk);
  EXPECT_FLOAT_EQ(c->alpha, 1.0f);
  EXPECT_EQ(c->page_size, 16);
  EXPECT_EQ(c->token_budget, 2048);
  EXPECT_EQ(c->budget_pages(), 128);
  EXPECT_EQ(c->niter, 3);
  EXPECT_EQ(c->tau_mode, EntmaxKvConfig::TauMode::kCorrected);
  EXPECT_EQ(c->tau_correction_iters, 3);
  EXPECT_TRUE(c->clamp_tau);
  EXPECT_FLOAT_EQ(c->safety_margin_z, 0.0f);
  EXPECT_FLOAT_EQ(c->max_quantile, 0.995f);
  EXPECT_FLOAT_EQ(c->threshold_excess_margin_fraction, 0.1f);
  EXPECT_FLOAT_EQ(c->tau_clamp_page_max_quantile, 0.5f);
  EXPECT_EQ(c->min_context, 0);
  EXPECT_EQ(c->sink_pages, 1);     // alpha 1
  EXPECT_EQ(c->dense_layers, 2);   // alpha 1
  EXPECT_EQ(c->gqa_selection, EntmaxKvConfig::GqaSelection::kSharedKv);
  EXPECT_TRUE(c->normalize_output);
  EXPECT_FLOAT_EQ(c->max_selected_fraction, 1.0f);
}

TEST(EntmaxKvConfig, EnumsByFullOrShortName) {
  auto c = ParseEntmaxKvConfig(Entmax({{"selector", std::string("ENTMAX_KV_SELECTOR_TOPK")},
                                       {"gqa_selection", std::string("per_query_head")},
                                       {"tau_mode", std::string("EXACT")},
                                       {"selector", std::string("TOPK")}}),
                               30);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->gqa_selection, EntmaxKvConfig::GqaSelection::kPerQueryHead);
  EXPECT_EQ(c->tau_mode, EntmaxKvConfig::TauMode::kExact);
  auto u = ParseEntmaxKvConfig(Entmax({{"selector", std::string("ENTMAX_KV_SELECTOR_UNSPECIFIED")}}), 30);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->selector, EntmaxKvConfig::Selector::kTopk);
}

TEST(EntmaxKvConfig, EveryRangeIsNamedInTheError) {
  ExpectError({{"alpha", 0.5}}, {"kv_compression.entmax_kv.alpha", "[1, 2]"});
  ExpectError({{"alpha", 1.25}}, {"kv_compression.entmax_kv.alpha", "1.0, 1.5, 2.0"});
  ExpectError({{"page_size", int64_t{12}}}, {"kv_compression.entmax_kv.page_size", "8, 16, 32, 64"});
  ExpectError({{"token_budget", int64_t{8}}}, {"kv_compression.entmax_kv.token_budget", "[16,"});
  ExpectError({{"token_budget", int64_t{100}}}, {"kv_compression.entmax_kv.token_budget", "multiple of page_size"});
  ExpectError({{"niter", int64_t{0}}}, {"kv_compression.entmax_kv.niter", "[1, 16]"});
  ExpectError({{"niter", int64_t{17}}}, {"kv_compression.entmax_kv.niter", "[1, 16]"});
  ExpectError({{"tau_mode", std::string("SLOW")}}, {"kv_compression.entmax_kv.tau_mode", "EXACT, FIXED, CORRECTED"});
  ExpectError({{"tau_correction_iters", int64_t{9}}}, {"kv_compression.entmax_kv.tau_correction_iters", "[0, 8]"});
  ExpectError({{"clamp_tau", int64_t{1}}}, {"kv_compression.entmax_kv.clamp_tau", "true or false"});
  ExpectError({{"safety_margin_z", 5.5}}, {"kv_compression.entmax_kv.safety_margin_z", "[0, 5]"});
  ExpectError({{"max_quantile", 0.5}}, {"kv_compression.entmax_kv.max_quantile", "(0.5, 1)"});
  ExpectError({{"max_quantile", 1.0}}, {"kv_compression.entmax_kv.max_quantile", "(0.5, 1)"});
  ExpectError({{"threshold_excess_margin_fraction", 1.5}},
              {"kv_compression.entmax_kv.threshold_excess_margin_fraction", "[0, 1]"});
  ExpectError({{"tau_clamp_page_max_quantile", 0.0}}, {"kv_compression.entmax_kv.tau_clamp_page_max_quantile", "(0, 1)"});
  ExpectError({{"min_context", int64_t{-1}}}, {"kv_compression.entmax_kv.min_context"});
  ExpectError({{"sink_pages", int64_t{9}}}, {"kv_compression.entmax_kv.sink_pages", "[0, 8]"});
  ExpectError({{"dense_layers", int64_t{31}}}, {"kv_compression.entmax_kv.dense_layers", "[0, 30]"});
  ExpectError({{"gqa_selection", std::string("ALL")}},
              {"kv_compression.entmax_kv.gqa_selection", "SHARED_KV, PER_QUERY_HEAD"});
  ExpectError({{"normalize_output", std::string("yes")}}, {"kv_compression.entmax_kv.normalize_output"});
  ExpectError({{"max_selected_fraction", 0.0}}, {"kv_compression.entmax_kv.max_selected_fraction", "(0, 1]"});
  ExpectError({{"selector", std::string("RANDOM")}}, {"kv_compression.entmax_kv.selector", "TOPK, GAUSSIAN"});
  ExpectError({{"no_such_knob", int64_t{1}}}, {"no_such_knob"});
}

TEST(EntmaxKvConfig, InRangeValuesAreKept) {
  auto c = ParseEntmaxKvConfig(Entmax({{"token_budget", int64_t{64}},
                                       {"sink_pages", int64_t{0}},
                                       {"dense_layers", int64_t{0}},
                                       {"min_context", int64_t{100}},
                                       {"normalize_output", false}}),
                               30);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->token_budget, 64);
  EXPECT_EQ(c->budget_pages(), 4);
  EXPECT_EQ(c->sink_pages, 0);
  EXPECT_EQ(c->dense_layers, 0);
  EXPECT_EQ(c->min_context, 100);
  EXPECT_FALSE(c->normalize_output);
}

TEST(EntmaxKvConfig, WhatThisVersionDoesNotImplementIsRefusedByName) {
  // Spec §6: GAUSSIAN with alpha 1 is always invalid.
  ExpectError({{"selector", std::string("GAUSSIAN")}}, {"kv_compression.entmax_kv.selector", "alpha"});
  ExpectError({{"selector", std::string("GAUSSIAN")}, {"alpha", 1.5}},
              {"kv_compression.entmax_kv.selector", "not implemented"});
  ExpectError({{"alpha", 1.5}}, {"kv_compression.entmax_kv.alpha", "not implemented"});
  ExpectError({{"alpha", 2.0}}, {"kv_compression.entmax_kv.alpha", "not implemented"});
}

TEST(EntmaxKvConfig, EveryPageSizeOfTheTableIsAccepted) {
  for (int64_t p : {8, 16, 32, 64}) {
    const absl::StatusOr<EntmaxKvConfig> c =
        ParseEntmaxKvConfig(Entmax({{"page_size", p}, {"token_budget", 4 * p}}), 30);
    ASSERT_TRUE(c.ok()) << p << ": " << c.status();
    EXPECT_EQ(c->page_size, p);
    EXPECT_EQ(c->budget_pages(), 4);
  }
}

}  // namespace
}  // namespace kvstream
