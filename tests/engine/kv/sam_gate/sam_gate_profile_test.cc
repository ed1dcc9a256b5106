// Per-model SAM-Gate thresholds (sam_gate.md C14, engine/kv/sam_gate/
// sam_gate_profile.h): a profile beside the model is found and becomes the
// thresholds' default (the report says so and names the file); a request's
// own thresholds still win; a malformed profile is an error naming the file
// and the field (the strategy refuses requests, nothing crashes); no profile
// (or a synthetic model) keeps the seed placeholders; the shipped profile of
// the bundled model parses.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "tests/test_paths.h"

namespace kvstream {
namespace {

namespace fs = std::filesystem;

KvGeometry Geo(const std::string& model_path) {
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = 4;
  g.n_kv_heads = 2;
  g.head_dim = 64;
  g.context_length = 4096;
  g.dtype = at::kFloat;
  g.model_path = model_path;
  return g;
}

StrategyConfig Sam(std::map<std::string, KnobValue> knobs = {}) {
  StrategyConfig c;
  c.strategy = "sam_gate";
  c.knobs = std::move(knobs);
  return c;
}

// A scratch checkout: <root>/models/tiny.gguf (10 bytes) and <root>/data/profiles.
struct Scratch {
  fs::path root, model, profiles;
  Scratch() {
    root = fs::temp_directory_path() /
           ("sam_profile_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root / "models");
    fs::create_directories(root / "data" / "profiles");
    model = root / "models" / "tiny.gguf";
    std::ofstream(model) << "0123456789";
    profiles = root / "data" / "profiles";
    ::unsetenv("KVSTREAM_PROFILE_DIR");
  }
  ~Scratch() { fs::remove_all(root); }
  fs::path Write(const std::string& text) {
    const fs::path p = profiles / "tiny.gguf.sam_gate.json";
    std::ofstream(p) << text;
    return p;
  }
};

std::string Good(double flat = 0.25, double obs = 7.5, const std::string& extra = "") {
  return "{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"tiny.gguf\", "
         "\"model_bytes\": 10, \"f_flat_max\": " +
         std::to_string(flat) + ", \"f_obs_min\": " + std::to_string(obs) + ", \"prompts\": 56" + extra + "}";
}

TEST(SamGateProfile, FoundBesideTheModelAndApplied) {
  Scratch s;
  s.Write(Good());
  SamGateStrategy strategy(Geo(s.model.string()));  // default search: <model dir>/../data/profiles
  ASSERT_TRUE(strategy.profile_status().ok()) << strategy.profile_status();
  ASSERT_TRUE(strategy.profile().has_value());
  EXPECT_DOUBLE_EQ(strategy.thresholds().f_flat_max, 0.25);
  EXPECT_DOUBLE_EQ(strategy.thresholds().f_obs_min, 7.5);
  EXPECT_EQ(strategy.profile()->prompts, 56);
  auto cache = strategy.Open(Sam());
  ASSERT_TRUE(cache.ok()) << cache.status();
  const CacheReport r = (*cache)->Report();
  EXPECT_FLOAT_EQ(r.stats.at("f_flat_max"), 0.25f);
  EXPECT_FLOAT_EQ(r.stats.at("f_obs_min"), 7.5f);
  EXPECT_EQ(r.stats.at("thresholds_source"), 1.0);
  EXPECT_EQ(r.stats.count("profile:tiny.gguf.sam_gate.json"), 1u);
  // The classification uses them.
  auto c = ParseSamGateConfig(Sam(), 64, strategy.thresholds());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->Classify(0.2), SamRegime::kFlat);
  EXPECT_EQ(c->Classify(0.25), SamRegime::kTransition);
  EXPECT_EQ(c->Classify(7.5), SamRegime::kObstructed);
}

TEST(SamGateProfile, RequestThresholdsWinOverTheProfile) {
  Scratch s;
  s.Write(Good());
  SamGateStrategy strategy(Geo(s.model.string()));
  auto cache = strategy.Open(Sam({{"f_obs_min", 100.0}}));
  ASSERT_TRUE(cache.ok()) << cache.status();
  const CacheReport r = (*cache)->Report();
  EXPECT_FLOAT_EQ(r.stats.at("f_flat_max"), 0.25f);  // the unset one still comes from the profile
  EXPECT_FLOAT_EQ(r.stats.at("f_obs_min"), 100.0f);
  EXPECT_EQ(r.stats.at("thresholds_source"), 2.0);
  EXPECT_EQ(r.stats.count("profile:tiny.gguf.sam_gate.json"), 0u);
  // Cross-field rule against the profile's value.
  absl::Status bad = strategy.Validate(Sam({{"f_obs_min", 0.1}}));
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("kv_compression.sam_gate.f_flat_max"), std::string::npos) << bad;
}

TEST(SamGateProfile, MalformedProfileIsAnErrorNamingFileAndField) {
  struct Case {
    std::string text, field;
  };
  const std::vector<Case> cases = {
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"tiny.gguf\", \"f_flat_max\": 1}",
       "\"f_obs_min\" is missing"},
      {Good(9.0, 1.0), "\"f_flat_max\" must be <= f_obs_min"},
      {Good(-1.0, 1.0), "\"f_flat_max\" must be in"},
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"other.gguf\", "
       "\"f_flat_max\": 1, \"f_obs_min\": 2}",
       "\"model\" names \"other.gguf\""},
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"tiny.gguf\", \"model_bytes\": 11, "
       "\"f_flat_max\": 1, \"f_obs_min\": 2}",
       "\"model_bytes\" is 11"},
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"tiny.gguf\", "
       "\"f_flat_max\": \"low\", \"f_obs_min\": 2}",
       "\"f_flat_max\" must be a number"},
      {"{\"format\": \"something.else\", \"version\": 1}", "\"format\" must be"},
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 2}", "\"version\" must be 1"},
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"tiny.gguf\", "
       "\"f_flat_max\": 1, \"f_obs_min\": {\"x\": 2}}",
       "unsupported value for \"f_obs_min\""},
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"tiny.gguf\", \"f_flat_max\": 1",
       "expected ',' or '}'"},
      {"", "expected '{'"},
      {"{\"format\": \"kvstream.sam_gate.profile\", \"version\": 1, \"model\": \"tiny.gguf\", "
       "\"f_flat_max\": 1, \"f_obs_min\": 1e999}",
       "\"f_obs_min\" must be finite"},
      {std::string(70000, ' ') + "{}", "larger than 65536 bytes"},
  };
  for (const Case& c : cases) {
    Scratch s;
    const fs::path p = s.Write(c.text);
    SamGateStrategy strategy(Geo(s.model.string()));
    const absl::Status st = strategy.profile_status();
    ASSERT_FALSE(st.ok()) << c.field;
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(st.message().find("tiny.gguf.sam_gate.json"), std::string::npos) << st;
    EXPECT_NE(st.message().find(c.field), std::string::npos) << st << "\nwanted: " << c.field;
    // Requests are refused with the same message; nothing is opened.
    absl::Status v = strategy.Validate(Sam());
    EXPECT_EQ(v.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_FALSE(strategy.Open(Sam()).ok());
  }
}

TEST(SamGateProfile, NoProfileOrSyntheticModelKeepsTheSeedDefaults) {
  Scratch s;  // no file written
  for (const std::string& model : {s.model.string(), std::string()}) {
    SamGateStrategy strategy(Geo(model));
    ASSERT_TRUE(strategy.profile_status().ok());
    EXPECT_FALSE(strategy.profile().has_value());
    EXPECT_DOUBLE_EQ(strategy.thresholds().f_flat_max, 1e-2);
    EXPECT_DOUBLE_EQ(strategy.thresholds().f_obs_min, 50.0);
    auto cache = strategy.Open(Sam());
    ASSERT_TRUE(cache.ok()) << cache.status();
    const CacheReport r = (*cache)->Report();
    EXPECT_FLOAT_EQ(r.stats.at("f_flat_max"), 1e-2f);
    EXPECT_FLOAT_EQ(r.stats.at("f_obs_min"), 50.0f);
    EXPECT_EQ(r.stats.at("thresholds_source"), 0.0);
  }
}

TEST(SamGateProfile, ExplicitDirsAndEnvironmentDirWinInOrder) {
  Scratch s;
  s.Write(Good(0.5, 5.0));
  const fs::path other = s.root / "elsewhere";
  fs::create_directories(other);
  std::ofstream(other / "tiny.gguf.sam_gate.json") << Good(1.0, 2.0);
  SamGateStrategy explicit_dirs(Geo(s.model.string()), std::vector<std::string>{other.string()});
  ASSERT_TRUE(explicit_dirs.profile().has_value());
  EXPECT_DOUBLE_EQ(explicit_dirs.thresholds().f_flat_max, 1.0);
  ::setenv("KVSTREAM_PROFILE_DIR", other.string().c_str(), 1);
  SamGateStrategy env(Geo(s.model.string()));
  ::unsetenv("KVSTREAM_PROFILE_DIR");
  ASSERT_TRUE(env.profile().has_value());
  EXPECT_DOUBLE_EQ(env.thresholds().f_obs_min, 2.0);
  SamGateStrategy none(Geo(s.model.string()), std::vector<std::string>{});
  EXPECT_FALSE(none.profile().has_value());
}

TEST(SamGateProfile, WrittenTextRoundTrips) {
  SamGateProfile p;
  p.model = "tiny.gguf";
  p.model_bytes = 10;
  p.f_flat_max = 0.123456789;
  p.f_obs_min = 9.87654321;
  p.prompts = 56;
  p.source = "bench \"quoted\"";
  auto q = ParseSamGateProfile(SamGateProfileToJson(p), "mem", "");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->model, p.model);
  EXPECT_EQ(q->model_bytes, 10);
  EXPECT_NEAR(q->f_flat_max, p.f_flat_max, 1e-9);
  EXPECT_NEAR(q->f_obs_min, p.f_obs_min, 1e-8);
  EXPECT_EQ(q->prompts, 56);
  EXPECT_EQ(q->source, p.source);
}

TEST(SamGateProfile, ShippedProfileOfTheBundledModelLoads) {
  const std::string model = testing::DefaultModelPath();
  if (!fs::exists(model)) GTEST_SKIP() << "bundled model absent";
  const fs::path shipped = fs::path(testing::SourceDir()) / "data" / "profiles" / SamGateProfileFileName(model);
  if (!fs::exists(shipped)) GTEST_SKIP() << "no shipped profile " << shipped;
  ::unsetenv("KVSTREAM_PROFILE_DIR");
  SamGateStrategy strategy(Geo(model));
  ASSERT_TRUE(strategy.profile_status().ok()) << strategy.profile_status();
  ASSERT_TRUE(strategy.profile().has_value());
  EXPECT_EQ(strategy.thresholds().source, SamThresholdSource::kProfile);
  EXPECT_LT(strategy.thresholds().f_flat_max, strategy.thresholds().f_obs_min);
  EXPECT_GE(strategy.profile()->prompts, 50);
}

}  // namespace
}  // namespace kvstream
