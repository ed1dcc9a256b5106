// --kv knob setting through protobuf reflection (client/knobs.h), and the
// strategy config messages against the Knobs tables of
// shared/design/strategies/<name>.md. No server.
#include "client/knobs.h"

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstream::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using kvstream::v1::KvCompression;
using ::testing::HasSubstr;

const Descriptor& ConfigOf(const std::string& strategy) {
  auto field = FindStrategy(strategy);
  EXPECT_TRUE(field.ok()) << field.status();
  return *(*field)->message_type();
}

const Message& ConfigIn(const KvCompression& kvc, const std::string& strategy) {
  return kvc.GetReflection()->GetMessage(kvc, FindStrategy(strategy).value());
}

// (name, type) of every knob, in table order: the Knobs tables of the specs
// (AKV without eviction_trigger_ratio, strategies/README.md "Decisions").
const std::map<std::string, std::vector<std::pair<std::string, std::string>>>& SpecTables() {
  static const auto* tables = new std::map<std::string, std::vector<std::pair<std::string, std::string>>>{
      {"dense", {}},
      {"sam_gate",
       {{"tau", "float"},
        {"flat_bits", "int32"},
        {"trans_bits", "int32"},
        {"obs_bits", "int32"},
        {"flat_heads", "float"},
        {"trans_heads", "float"},
        {"f_flat_max", "float"},
        {"f_obs_min", "float"},
        {"max_ctx_flat", "int32"},
        {"max_ctx_trans", "int32"},
        {"max_ctx_obs", "int32"},
        {"num_probes", "int32"},
        {"probe_window", "int32"},
        {"probe_seed", "uint64"},
        {"num_sink_tokens", "int32"},
        {"quant_group_size", "int32"},
        {"packed_storage", "bool"},
        {"dropped_head_mode", "enum"},
        {"calibrate", "bool"}}},
      {"spectral_quant",
       {{"total_bits", "int32"},
        {"use_water_fill", "bool"},
        {"use_qjl", "bool"},
        {"d_eff_variance", "float"},
        {"noise_bits", "int32"},
        {"value_noise_bits", "int32"},
        {"calibration_profile", "string"},
        {"compress_decode_tokens", "bool"},
        {"center_keys", "bool"},
        {"center_values", "bool"},
        {"num_sink_tokens", "int32"},
        {"rd_allocation", "bool"},
        {"num_recent_tokens", "int32"}}},
      {"entmax_kv",
       {{"selector", "enum"},
        {"alpha", "float"},
        {"page_size", "uint32"},
        {"token_budget", "uint32"},
        {"niter", "uint32"},
        {"tau_mode", "enum"},
        {"tau_correction_iters", "int32"},
        {"clamp_tau", "bool"},
        {"safety_margin_z", "float"},
        {"max_quantile", "float"},
        {"threshold_excess_margin_fraction", "float"},
        {"tau_clamp_page_max_quantile", "float"},
        {"min_context", "uint32"},
        {"sink_pages", "uint32"},
        {"dense_layers", "uint32"},
        {"gqa_selection", "enum"},
        {"normalize_output", "bool"},
        {"max_selected_fraction", "float"}}},
      {"akv",
       {{"hot_budget", "uint32"},
        {"warm_budget", "uint32"},
        {"warm_bits", "uint32"},
        {"cold_bits", "uint32"},
        {"group_size", "uint32"},
        {"enable_cold_tier", "bool"},
        {"eviction_batch_size", "uint32"},
        {"initial_tokens_protected", "uint32"},
        {"recent_tokens_protected", "uint32"},
        {"importance_decay", "float"},
        {"n_anchors", "uint32"},
        {"scoring_strategy", "enum"},
        {"attention_weight", "float"},
        {"recency_weight", "float"},
        {"enable_promotion", "bool"},
        {"promote_threshold", "float"},
        {"promote_max_per_step", "uint32"},
        {"key_quant_mode", "enum"},
        {"protect_first_layers", "uint32"},
        {"protect_last_layers", "uint32"},
        {"adaptive_hot_frac", "float"},
        {"prefill_chunk_tokens", "uint32"},
        {"cold_scan_interval", "uint32"}}},
      {"laser_kv",
       {{"compression_mode", "enum"},
        {"method", "enum"},
        {"budget", "int32"},
        {"compression_ratio", "float"},
        {"protection_divisor", "int32"},
        {"block_size", "int32"},
        {"hybrid_primary", "enum"},
        {"hybrid_secondary", "enum"},
        {"hybrid_ratio", "float"},
        {"lsh_mode", "enum"},
        {"num_bits", "int32"},
        {"num_tables", "int32"},
        {"tie_break", "enum"},
        {"boundary_smoothing", "bool"},
        {"query_len", "int32"},
        {"lsh_seed", "uint64"}}},
  };
  return *tables;
}

// Enum values per enum type, from the specs (short names, zero value first).
const std::map<std::string, std::vector<std::string>>& SpecEnums() {
  static const auto* enums = new std::map<std::string, std::vector<std::string>>{
      {"SamGateDroppedHeadMode", {"UNSPECIFIED", "SELF", "ZERO"}},
      {"EntmaxKvSelector", {"UNSPECIFIED", "TOPK", "GAUSSIAN"}},
      {"EntmaxKvTauMode", {"UNSPECIFIED", "EXACT", "FIXED", "CORRECTED"}},
      {"EntmaxKvGqaSelection", {"UNSPECIFIED", "SHARED_KV", "PER_QUERY_HEAD"}},
      {"AkvScoringStrategy", {"UNSPECIFIED", "IMPORTANCE", "HYBRID", "FIFO"}},
      {"AkvKeyQuantMode", {"UNSPECIFIED", "PER_TOKEN", "PER_CHANNEL"}},
      {"LaserKvCompressionMode", {"UNSPECIFIED", "ACCUMULATE", "RECURSIVE"}},
      {"LaserKvMethod", {"UNSPECIFIED", "HYBRID", "EXACT", "LSH"}},
      {"LaserKvSelector", {"UNSPECIFIED", "EXACT", "LSH"}},
      {"LaserKvLshMode", {"UNSPECIFIED", "MAGICPIG_BASELINE", "FREQUENCY_RANK"}},
      {"LaserKvTieBreak", {"UNSPECIFIED", "L2", "MAX_SIM", "MAHALANOBIS", "PARTITIONED_CENTROID", "NONE"}},
  };
  return *enums;
}

// "LaserKvTieBreak" -> "LASER_KV_TIE_BREAK_".
std::string UpperSnakePrefix(const std::string& camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    if (i > 0 && absl::ascii_isupper(camel[i])) out.push_back('_');
    out.push_back(absl::ascii_toupper(camel[i]));
  }
  return out + "_";
}

TEST(StrategyConfigs, StrategiesAreTheKvCompressionOneofInProtoOrder) {
  EXPECT_THAT(StrategyNames(),
              ::testing::ElementsAre("dense", "sam_gate", "spectral_quant", "entmax_kv", "akv", "laser_kv"));
}

TEST(StrategyConfigs, KnobsMatchSpecTablesInNameTypeAndOrder) {
  for (const auto& [strategy, table] : SpecTables()) {
    const Descriptor& config = ConfigOf(strategy);
    ASSERT_EQ(config.field_count(), static_cast<int>(table.size())) << strategy;
    for (int i = 0; i < config.field_count(); ++i) {
      const FieldDescriptor& f = *config.field(i);
      EXPECT_EQ(f.name(), table[i].first) << strategy << " field " << i;
      EXPECT_EQ(f.type_name(), table[i].second) << strategy << "." << f.name();
      EXPECT_FALSE(f.is_repeated()) << strategy << "." << f.name();
    }
  }
}

TEST(StrategyConfigs, EveryKnobHasPresenceSoUnsetIsToldApart) {
  for (const std::string& strategy : StrategyNames()) {
    const Descriptor& config = ConfigOf(strategy);
    for (int i = 0; i < config.field_count(); ++i) {
      EXPECT_TRUE(config.field(i)->has_presence()) << strategy << "." << config.field(i)->name();
    }
  }
}

TEST(StrategyConfigs, FieldNumbersFollowTableOrderWithAkvTriggerReserved) {
  for (const std::string& strategy : StrategyNames()) {
    const Descriptor& config = ConfigOf(strategy);
    for (int i = 0; i < config.field_count(); ++i) {
      int expected = i + 1;
      if (strategy == "akv" && expected >= 7) ++expected;  // 7 was eviction_trigger_ratio
      EXPECT_EQ(config.field(i)->number(), expected) << strategy << "." << config.field(i)->name();
    }
  }
  const Descriptor& akv = ConfigOf("akv");
  EXPECT_EQ(akv.FindFieldByName("eviction_trigger_ratio"), nullptr);
  EXPECT_TRUE(akv.IsReservedNumber(7));
  EXPECT_TRUE(akv.IsReservedName("eviction_trigger_ratio"));
}

TEST(StrategyConfigs, EnumsAreNestedWithSpecValuesAndUnspecifiedZero) {
  std::map<std::string, int> seen;
  for (const std::string& strategy : StrategyNames()) {
    const Descriptor& config = ConfigOf(strategy);
    for (int i = 0; i < config.field_count(); ++i) {
      const FieldDescriptor& f = *config.field(i);
      if (f.cpp_type() != FieldDescriptor::CPPTYPE_ENUM) continue;
      const auto& type = *f.enum_type();
      EXPECT_EQ(type.containing_type(), &config) << type.full_name() << " must be nested in " << config.name();
      auto it = SpecEnums().find(type.name());
      ASSERT_NE(it, SpecEnums().end()) << "enum " << type.name() << " is not in the specs";
      ASSERT_EQ(type.value_count(), static_cast<int>(it->second.size())) << type.name();
      const std::string prefix = UpperSnakePrefix(type.name());
      for (int v = 0; v < type.value_count(); ++v) {
        EXPECT_EQ(type.value(v)->number(), v) << type.name();
        EXPECT_EQ(type.value(v)->name(), prefix + it->second[v]) << type.name();
      }
      ++seen[type.name()];
    }
  }
  EXPECT_EQ(seen.size(), SpecEnums().size());
  EXPECT_EQ(seen["LaserKvSelector"], 2);  // hybrid_primary and hybrid_secondary share it
}

// A value of the knob's type, as text, and a check that it was stored.
struct Sample {
  std::string text;
  std::function<void(const Message&, const FieldDescriptor&)> check;
};

std::vector<Sample> SamplesFor(const FieldDescriptor& f) {
  switch (f.cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return {
          {"-7", [](const Message& m, const FieldDescriptor& d) { EXPECT_EQ(m.GetReflection()->GetInt32(m, &d), -7); }},
          {"0x10",
           [](const Message& m, const FieldDescriptor& d) { EXPECT_EQ(m.GetReflection()->GetInt32(m, &d), 16); }}};
    case FieldDescriptor::CPPTYPE_INT64:
      return {{"-123456789012", [](const Message& m, const FieldDescriptor& d) {
                 EXPECT_EQ(m.GetReflection()->GetInt64(m, &d), -123456789012);
               }}};
    case FieldDescriptor::CPPTYPE_UINT32:
      return {{"4000000000", [](const Message& m, const FieldDescriptor& d) {
                 EXPECT_EQ(m.GetReflection()->GetUInt32(m, &d), 4000000000u);
               }}};
    case FieldDescriptor::CPPTYPE_UINT64:
      return {{"0x4C41534552",
               [](const Message& m, const FieldDescriptor& d) {
                 EXPECT_EQ(m.GetReflection()->GetUInt64(m, &d), 327513490770u);
               }},
              {"18446744073709551615", [](const Message& m, const FieldDescriptor& d) {
                 EXPECT_EQ(m.GetReflection()->GetUInt64(m, &d), 18446744073709551615u);
               }}};
    case FieldDescriptor::CPPTYPE_FLOAT:
      return {{"1e-2", [](const Message& m, const FieldDescriptor& d) {
                 EXPECT_EQ(m.GetReflection()->GetFloat(m, &d), 1e-2f);
               }}};
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return {{"0.25", [](const Message& m, const FieldDescriptor& d) {
                 EXPECT_EQ(m.GetReflection()->GetDouble(m, &d), 0.25);
               }}};
    case FieldDescriptor::CPPTYPE_BOOL:
      // false must still be sent: presence, not value, tells it from unset.
      return {
          {"false",
           [](const Message& m, const FieldDescriptor& d) { EXPECT_FALSE(m.GetReflection()->GetBool(m, &d)); }},
          {"ON", [](const Message& m, const FieldDescriptor& d) { EXPECT_TRUE(m.GetReflection()->GetBool(m, &d)); }}};
    case FieldDescriptor::CPPTYPE_STRING:
      return {{"my profile", [](const Message& m, const FieldDescriptor& d) {
                 EXPECT_EQ(m.GetReflection()->GetString(m, &d), "my profile");
               }}};
    case FieldDescriptor::CPPTYPE_ENUM: {
      std::vector<Sample> out;
      for (int v = 0; v < f.enum_type()->value_count(); ++v) {
        const int number = f.enum_type()->value(v)->number();
        auto check = [number](const Message& m, const FieldDescriptor& d) {
          EXPECT_EQ(m.GetReflection()->GetEnumValue(m, &d), number);
        };
        const std::vector<std::string> names = EnumValueNames(*f.enum_type()->value(v));
        for (const std::string& name : names) {
          out.push_back({name, check});
          out.push_back({absl::AsciiStrToLower(name), check});
        }
      }
      return out;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  ADD_FAILURE() << "no sample for " << f.full_name();
  return {};
}

TEST(SetKnob, EveryKnobOfEveryStrategyIsSettableByName) {
  int knobs = 0;
  for (const std::string& strategy : StrategyNames()) {
    const Descriptor& config = ConfigOf(strategy);
    for (int i = 0; i < config.field_count(); ++i) {
      const FieldDescriptor& f = *config.field(i);
      for (const Sample& sample : SamplesFor(f)) {
        KvCompression kvc;
        const std::string item = absl::StrCat(f.name(), "=", sample.text);
        ASSERT_TRUE(ApplyStrategy(strategy, {item}, kvc).ok()) << strategy << " --kv " << item;
        ASSERT_EQ(kvc.strategy_case(), FindStrategy(strategy).value()->number()) << strategy;
        const Message& set = ConfigIn(kvc, strategy);
        EXPECT_TRUE(set.GetReflection()->HasField(set, &f)) << strategy << " --kv " << item;
        sample.check(set, f);
        // Only that knob is set.
        std::vector<const FieldDescriptor*> present;
        set.GetReflection()->ListFields(set, &present);
        EXPECT_EQ(present.size(), 1u) << strategy << " --kv " << item;
      }
      ++knobs;
    }
  }
  EXPECT_EQ(knobs, 19 + 13 + 18 + 23 + 16);
}

TEST(SetKnob, UnknownKnobErrorNamesEveryValidKnob) {
  for (const std::string& strategy : StrategyNames()) {
    KvCompression kvc;
    absl::Status status = ApplyStrategy(strategy, {"no_such_knob=1"}, kvc);
    ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << strategy;
    EXPECT_THAT(std::string(status.message()), HasSubstr("unknown knob 'no_such_knob' for strategy " + strategy));
    const Descriptor& config = ConfigOf(strategy);
    for (int i = 0; i < config.field_count(); ++i) {
      EXPECT_THAT(std::string(status.message()), HasSubstr(config.field(i)->name())) << strategy;
    }
  }
}

TEST(SetKnob, AkvEvictionTriggerRatioIsNotAKnob) {
  KvCompression kvc;
  absl::Status status = ApplyStrategy("akv", {"eviction_trigger_ratio=0.9"}, kvc);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown knob 'eviction_trigger_ratio'"));
}

TEST(SetKnob, BadValueErrorNamesKnobAndExpectedValues) {
  for (const std::string& strategy : StrategyNames()) {
    const Descriptor& config = ConfigOf(strategy);
    for (int i = 0; i < config.field_count(); ++i) {
      const FieldDescriptor& f = *config.field(i);
      if (f.cpp_type() == FieldDescriptor::CPPTYPE_STRING) continue;  // any text is a string
      KvCompression kvc;
      absl::Status status = ApplyStrategy(strategy, {f.name() + "=not-a-value"}, kvc);
      ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << f.full_name();
      const std::string message(status.message());
      EXPECT_THAT(message, HasSubstr(absl::StrCat("bad value 'not-a-value' for knob ", strategy, ".", f.name())));
      if (f.cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
        for (int v = 0; v < f.enum_type()->value_count(); ++v) {
          EXPECT_THAT(message, HasSubstr(f.enum_type()->value(v)->name())) << f.full_name();
        }
      }
    }
  }
}

TEST(SetKnob, RejectsOutOfTypeRangeAndNonFiniteValues) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"laser_kv", "budget=2147483648"}, {"laser_kv", "budget=1.5"},    {"akv", "hot_budget=-1"},
      {"akv", "hot_budget=4294967296"},  {"sam_gate", "probe_seed=-1"}, {"sam_gate", "tau=nan"},
      {"sam_gate", "tau=inf"},           {"sam_gate", "tau=1e39"},      {"akv", "enable_promotion=maybe"},
      {"akv", "scoring_strategy=7"},     {"akv", "hot_budget="},        {"akv", "hot_budget=0x"},
  };
  for (const auto& [strategy, item] : bad) {
    KvCompression kvc;
    EXPECT_EQ(ApplyStrategy(strategy, {item}, kvc).code(), absl::StatusCode::kInvalidArgument)
        << strategy << " --kv " << item;
  }
}

TEST(SetKnob, EnumAcceptsShortFullLowercaseAndNumber) {
  for (const char* value : {"FIFO", "fifo", "AKV_SCORING_STRATEGY_FIFO", "akv_scoring_strategy_fifo", "3"}) {
    kvstream::v1::AkvConfig config;
    ASSERT_TRUE(SetKnob(config, "scoring_strategy", value).ok()) << value;
    EXPECT_EQ(config.scoring_strategy(), kvstream::v1::AkvConfig::AKV_SCORING_STRATEGY_FIFO) << value;
  }
  // PER_CHANNEL is in the enum (the server refuses it, not the client).
  kvstream::v1::AkvConfig config;
  ASSERT_TRUE(SetKnob(config, "key_quant_mode", "per_channel").ok());
  EXPECT_EQ(config.key_quant_mode(), kvstream::v1::AkvConfig::AKV_KEY_QUANT_MODE_PER_CHANNEL);
}

TEST(ApplyKnobList, SetsSeveralKnobsAcrossListsWithSpaces) {
  KvCompression kvc;
  ASSERT_TRUE(ApplyStrategy("laser_kv", {" budget = 512 , method=lsh", "tie_break=partitioned_centroid,"}, kvc).ok());
  ASSERT_TRUE(kvc.has_laser_kv());
  EXPECT_EQ(kvc.laser_kv().budget(), 512);
  EXPECT_EQ(kvc.laser_kv().method(), kvstream::v1::LaserKvConfig::LASER_KV_METHOD_LSH);
  EXPECT_EQ(kvc.laser_kv().tie_break(), kvstream::v1::LaserKvConfig::LASER_KV_TIE_BREAK_PARTITIONED_CENTROID);
  EXPECT_FALSE(kvc.laser_kv().has_num_bits());
}

TEST(ApplyKnobList, LaterValueOfTheSameKnobWins) {
  kvstream::v1::AkvConfig config;
  ASSERT_TRUE(ApplyKnobList(config, "hot_budget=64,hot_budget=128").ok());
  EXPECT_EQ(config.hot_budget(), 128u);
}

TEST(ApplyKnobList, ItemWithoutEqualsIsAnErrorListingKnobs) {
  kvstream::v1::AkvConfig config;
  absl::Status status = ApplyKnobList(config, "hot_budget");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("not name=value"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("cold_scan_interval"));
}

TEST(ApplyStrategy, StrategyWithoutKnobsSelectsAnEmptyConfig) {
  for (const std::string& strategy : StrategyNames()) {
    KvCompression kvc;
    ASSERT_TRUE(ApplyStrategy(strategy, {}, kvc).ok()) << strategy;
    EXPECT_EQ(kvc.strategy_case(), FindStrategy(strategy).value()->number()) << strategy;
    std::vector<const FieldDescriptor*> present;
    ConfigIn(kvc, strategy).GetReflection()->ListFields(ConfigIn(kvc, strategy), &present);
    EXPECT_TRUE(present.empty()) << strategy;
  }
}

TEST(ApplyStrategy, NoStrategyLeavesCompressionUnsetAndRefusesKnobs) {
  KvCompression kvc;
  ASSERT_TRUE(ApplyStrategy("", {}, kvc).ok());
  EXPECT_EQ(kvc.strategy_case(), KvCompression::STRATEGY_NOT_SET);
  absl::Status status = ApplyStrategy("", {"hot_budget=1"}, kvc);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("--kv needs --strategy"));
}

TEST(ApplyStrategy, UnknownStrategyErrorListsEveryStrategy) {
  KvCompression kvc;
  absl::Status status = ApplyStrategy("h2o", {}, kvc);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& strategy : StrategyNames()) {
    EXPECT_THAT(std::string(status.message()), HasSubstr(strategy));
  }
}

TEST(ApplyStrategy, DenseHasNoKnobs) {
  KvCompression kvc;
  absl::Status status = ApplyStrategy("dense", {"x=1"}, kvc);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("valid knobs: (none)"));
}

}  // namespace
}  // namespace kvstream::client
