// Profile discovery at strategy construction (spectral_quant.md §6.2, the
// decisions in sq_strategy.h): *.sqcal beside the model whose model hash
// matches are loaded under their stem; a file made for another model is
// skipped; a corrupt file or a shape mismatch is an error naming the file.
// Uses a temporary folder with a link to the bundled model (no calibration
// runs: every case provides a default profile, or calibrate is off).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_strategy.h"
#include "tests/test_paths.h"

namespace kvstream {
namespace {
namespace fs = std::filesystem;

// SmolLM2-135M's attention shape.
KvGeometry Smol(const std::string& model_path) {
  KvGeometry g;
  g.n_layers = 30;
  g.n_heads = 9;
  g.n_kv_heads = 3;
  g.head_dim = 64;
  g.context_length = 8192;
  g.model_path = model_path;
  return g;
}

SqProfile Random(int64_t L, int64_t H, int64_t D, uint64_t hash, const std::string& name) {
  SqCovariance cov(L, H, D);
  for (int64_t l = 0; l < L; ++l) cov.Add(l, at::randn({H, 8, D}), at::randn({H, 8, D}));
  auto p = cov.Finish(name, hash);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

class SqProfiles : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(testing::DefaultModelPath())) GTEST_SKIP() << "bundled model absent";
    dir_ = fs::path(::testing::TempDir()) / ("sq_profiles_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    model_ = (dir_ / "model.gguf").string();
    fs::create_symlink(fs::absolute(testing::DefaultModelPath()), model_);
    setenv("XDG_CACHE_HOME", (dir_ / "cache").c_str(), 1);  // keep the user cache out of it
    auto h = SqModelHash(model_);
    ASSERT_TRUE(h.ok());
    hash_ = *h;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
  std::string model_;
  uint64_t hash_ = 0;
};

TEST_F(SqProfiles, LoadsMatchingFilesByStemAndSkipsOtherModels) {
  ASSERT_TRUE(WriteSqcal(Random(30, 3, 64, hash_, "default"), (dir_ / "default.sqcal").string()).ok());
  ASSERT_TRUE(WriteSqcal(Random(30, 3, 64, hash_, "code"), (dir_ / "code.sqcal").string()).ok());
  ASSERT_TRUE(WriteSqcal(Random(30, 3, 64, hash_ ^ 1, "other"), (dir_ / "other.sqcal").string()).ok());
  auto s = SpectralQuantStrategy::Create(Smol(model_));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->ProfileNames(), (std::vector<std::string>{"code", "default"}));
  StrategyConfig c;
  c.strategy = "spectral_quant";
  EXPECT_TRUE((*s)->Validate(c).ok());
  c.knobs = {{"calibration_profile", std::string("code")}};
  EXPECT_TRUE((*s)->Validate(c).ok());
  c.knobs = {{"calibration_profile", std::string("other")}};
  EXPECT_EQ((*s)->Validate(c).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SqProfiles, CorruptFileIsAnErrorNamingIt) {
  std::ofstream(dir_ / "default.sqcal") << "KVSQCAL";
  auto s = SpectralQuantStrategy::Create(Smol(model_));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("default.sqcal"), std::string::npos) << s.status();
}

TEST_F(SqProfiles, ShapeMismatchIsAnError) {
  ASSERT_TRUE(WriteSqcal(Random(2, 3, 64, hash_, "default"), (dir_ / "default.sqcal").string()).ok());
  auto s = SpectralQuantStrategy::Create(Smol(model_));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("L=2"), std::string::npos) << s.status();
}

TEST_F(SqProfiles, UserCacheIsSearchedToo) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash_));
  const fs::path cache = dir_ / "cache" / "kvstream" / "sqcal" / (std::string(hex) + "-" + kSqCalibRecipe);
  EXPECT_EQ(SqUserCacheDir(hash_), cache.string());
  fs::create_directories(cache);
  ASSERT_TRUE(WriteSqcal(Random(30, 3, 64, hash_, "default"), (cache / "default.sqcal").string()).ok());
  auto p = SqLoadProfiles(Smol(model_), /*calibrate=*/false);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0]->name, "default");
}

TEST_F(SqProfiles, NoProfileAndNoCalibrationRefusesRequests) {
  auto p = SqLoadProfiles(Smol(model_), /*calibrate=*/false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->empty());
  SpectralQuantStrategy s(Smol(model_), *p);
  StrategyConfig c;
  c.strategy = "spectral_quant";
  const absl::Status st = s.Validate(c);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("none loaded"), std::string::npos) << st;
}

}  // namespace
}  // namespace kvstream
