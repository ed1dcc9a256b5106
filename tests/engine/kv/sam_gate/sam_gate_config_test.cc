// SamGateConfig parsing (sam_gate.md §5, C12): defaults, the range of every
// knob named in the error, cross-field rules, enum names, the regime rule,
// and the (now empty) refusal hook.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/kv/sam_gate/sam_gate_config.h"

namespace kvstream {
namespace {

StrategyConfig Sam(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "sam_gate";
  c.knobs = std::move(knobs);
  return c;
}

void ExpectError(std::map<std::string, KnobValue> knobs, const std::vector<std::string>& needles, int64_t d = 128) {
  absl::StatusOr<SamGateConfig> c = ParseSamGateConfig(Sam(knobs), d);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& n : needles) EXPECT_NE(c.status().message().find(n), std::string::npos) << c.status() << " / " << n;
}

TEST(SamGateConfig, UnsetKnobsTakeTheSpecDefaults) {
  absl::StatusOr<SamGateConfig> c = ParseSamGateConfig(Sam({}), 128);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->tau, 0.05f);
  EXPECT_EQ(c->flat_bits, 4);
  EXPECT_EQ(c->trans_bits, 8);
  EXPECT_EQ(c->obs_bits, 16);
  EXPECT_FLOAT_EQ(c->flat_heads, 0.5f);
  EXPECT_FLOAT_EQ(c->trans_heads, 0.75f);
  EXPECT_FLOAT_EQ(c->f_flat_max, 1e-2f);
  EXPECT_FLOAT_EQ(c->f_obs_min, 50.0f);
  EXPECT_EQ(c->max_ctx_flat, 64);
  EXPECT_EQ(c->max_ctx_trans, 128);
  EXPECT_EQ(c->max_ctx_obs, 128);
  EXPECT_EQ(c->num_probes, 8);
  EXPECT_EQ(c->probe_window, 64);
  EXPECT_EQ(c->probe_seed, 0u);
  EXPECT_EQ(c->num_sink_tokens, 0);
  EXPECT_EQ(c->quant_group_size, 32);
  EXPECT_TRUE(c->packed_storage);
  EXPECT_EQ(c->dropped_head_mode, SamDroppedHeadMode::kSelf);
  EXPECT_FALSE(c->calibrate);
}

TEST(SamGateConfig, EveryRangeIsNamedInTheError) {
  ExpectError({{"tau", 2.5}}, {"kv_compression.sam_gate.tau", "[0, 2]"});
  ExpectError({{"tau", -0.1}}, {"kv_compression.sam_gate.tau", "[0, 2]"});
  ExpectError({{"flat_bits", int64_t{2}}}, {"kv_compression.sam_gate.flat_bits", "4, 8, 16"});
  ExpectError({{"trans_bits", int64_t{32}}}, {"kv_compression.sam_gate.trans_bits", "4, 8, 16"});
  ExpectError({{"obs_bits", int64_t{3}}}, {"kv_compression.sam_gate.obs_bits", "4, 8, 16"});
  ExpectError({{"flat_heads", 0.0}}, {"kv_compression.sam_gate.flat_heads", "(0, 1]"});
  ExpectError({{"trans_heads", 1.5}}, {"kv_compression.sam_gate.trans_heads", "(0, 1]"});
  ExpectError({{"f_flat_max", -1.0}}, {"kv_compression.sam_gate.f_flat_max"});
  ExpectError({{"f_obs_min", -1.0}}, {"kv_compression.sam_gate.f_obs_min"});
  ExpectError({{"f_obs_min", std::nan("")}}, {"kv_compression.sam_gate.f_obs_min"});
  ExpectError({{"max_ctx_flat", int64_t{0}}}, {"kv_compression.sam_gate.max_ctx_flat", "[1, 32768]"});
  ExpectError({{"max_ctx_trans", int64_t{32769}}}, {"kv_compression.sam_gate.max_ctx_trans", "[1, 32768]"});
  ExpectError({{"max_ctx_obs", int64_t{0}}}, {"kv_compression.sam_gate.max_ctx_obs", "[1, 32768]"});
  ExpectError({{"num_probes", int64_t{65}}}, {"kv_compression.sam_gate.num_probes", "[0, 64]"});
  ExpectError({{"probe_window", int64_t{7}}}, {"kv_compression.sam_gate.probe_window", "[8, 512]"});
  ExpectError({{"probe_seed", int64_t{-1}}}, {"kv_compression.sam_gate.probe_seed"});
  ExpectError({{"num_sink_tokens", int64_t{65}}}, {"kv_compression.sam_gate.num_sink_tokens", "[0, 64]"});
  ExpectError({{"quant_group_size", int64_t{8}}}, {"kv_compression.sam_gate.quant_group_size", "16, 32, 64, 128"});
  ExpectError({{"packed_storage", int64_t{1}}}, {"kv_compression.sam_gate.packed_storage", "true or false"});
  ExpectError({{"calibrate", std::string("yes")}}, {"kv_compression.sam_gate.calibrate", "true or false"});
  ExpectError({{"dropped_head_mode", std::string("KEEP")}}, {"kv_compression.sam_gate.dropped_head_mode"});
  ExpectError({{"no_such_knob", int64_t{1}}}, {"kv_compression.sam_gate", "no_such_knob"});
}

TEST(SamGateConfig, CrossFieldRules) {
  ExpectError({{"f_flat_max", 10.0}, {"f_obs_min", 5.0}}, {"kv_compression.sam_gate.f_flat_max", "f_obs_min"});
  ExpectError({{"quant_group_size", int64_t{128}}}, {"kv_compression.sam_gate.quant_group_size", "head dim 64"}, 64);
  EXPECT_TRUE(ParseSamGateConfig(Sam({{"quant_group_size", int64_t{64}}}), 64).ok());
  EXPECT_TRUE(ParseSamGateConfig(Sam({{"f_flat_max", 5.0}, {"f_obs_min", 5.0}}), 128).ok());
}

TEST(SamGateConfig, EnumsTakeProtoOrShortNames) {
  auto c = ParseSamGateConfig(Sam({{"dropped_head_mode", std::string("SAM_GATE_DROPPED_HEAD_MODE_ZERO")}}), 128);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dropped_head_mode, SamDroppedHeadMode::kZero);
  c = ParseSamGateConfig(Sam({{"dropped_head_mode", std::string("self")}}), 128);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dropped_head_mode, SamDroppedHeadMode::kSelf);
  c = ParseSamGateConfig(Sam({{"dropped_head_mode", std::string("SAM_GATE_DROPPED_HEAD_MODE_UNSPECIFIED")}}), 128);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dropped_head_mode, SamDroppedHeadMode::kSelf);
}

TEST(SamGateConfig, RegimeBoundariesAreLeftClosedAndNanIsObstructed) {
  SamGateConfig c;
  c.f_flat_max = 1.0f;
  c.f_obs_min = 5.0f;
  EXPECT_EQ(c.Classify(0.0), SamRegime::kFlat);
  EXPECT_EQ(c.Classify(0.999), SamRegime::kFlat);
  EXPECT_EQ(c.Classify(1.0), SamRegime::kTransition);
  EXPECT_EQ(c.Classify(4.999), SamRegime::kTransition);
  EXPECT_EQ(c.Classify(5.0), SamRegime::kObstructed);
  EXPECT_EQ(c.Classify(std::nan("")), SamRegime::kObstructed);
  c.f_flat_max = c.f_obs_min = 0.0f;
  EXPECT_EQ(c.Classify(0.0), SamRegime::kObstructed);
  EXPECT_STREQ(SamRegimeName(SamRegime::kTransition), "TRANSITION");
}

TEST(SamGateConfig, RegimeSettingsAndCompatStorage) {
  SamGateConfig c;
  EXPECT_EQ(c.Settings(SamRegime::kFlat).bits, 4);
  EXPECT_EQ(c.Settings(SamRegime::kFlat).window, 64);
  EXPECT_DOUBLE_EQ(c.Settings(SamRegime::kTransition).heads_fraction, 0.75f);
  EXPECT_DOUBLE_EQ(c.Settings(SamRegime::kObstructed).heads_fraction, 1.0);
  EXPECT_EQ(c.Settings(SamRegime::kObstructed).window, 128);
  EXPECT_EQ(c.StorageBits(SamRegime::kFlat), 4);
  EXPECT_EQ(c.FakeQuantBits(SamRegime::kFlat), 0);
  c.packed_storage = false;
  EXPECT_EQ(c.StorageBits(SamRegime::kFlat), 16);
  EXPECT_EQ(c.FakeQuantBits(SamRegime::kFlat), 4);
  EXPECT_EQ(c.FakeQuantBits(SamRegime::kObstructed), 0);
}

TEST(SamGateConfig, EveryKnobIsImplemented) {
  SamGateConfig c;  // defaults need the probe (f_obs_min = 50): implemented
  EXPECT_TRUE(SamGateCheckImplemented(c).ok());
  c.calibrate = true;
  EXPECT_TRUE(SamGateCheckImplemented(c).ok());
}

}  // namespace
}  // namespace kvstream
