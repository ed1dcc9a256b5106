// --prompt-len / --gen-len specs (client/length_distribution.h). No server.
#include "client/length_distribution.h"

#include <cmath>
#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstream::client {
namespace {

using ::testing::HasSubstr;

TEST(LengthDistribution, FixedAlwaysGivesItsValue) {
  auto d = LengthDistribution::Parse("gen-len", "64");
  ASSERT_TRUE(d.ok()) << d.status();
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(d->Sample(rng), 64);
  EXPECT_EQ(d->Max(), 64);
}

TEST(LengthDistribution, UniformCoversBothEndsAndNothingOutside) {
  auto d = LengthDistribution::Parse("prompt-len", "uniform:16:20");
  ASSERT_TRUE(d.ok()) << d.status();
  std::mt19937_64 rng(2);
  std::set<int32_t> seen;
  for (int i = 0; i < 2000; ++i) seen.insert(d->Sample(rng));
  EXPECT_EQ(seen, (std::set<int32_t>{16, 17, 18, 19, 20}));
  EXPECT_EQ(d->Max(), 20);
}

TEST(LengthDistribution, NormalHasItsMeanAndSpreadAndStaysPositive) {
  auto d = LengthDistribution::Parse("prompt-len", "normal:64:16");
  ASSERT_TRUE(d.ok()) << d.status();
  std::mt19937_64 rng(3);
  double sum = 0, sum_sq = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const double v = d->Sample(rng);
    sum += v;
    sum_sq += v * v;
  }
  const double mean = sum / n;
  EXPECT_NEAR(mean, 64, 0.5);
  EXPECT_NEAR(std::sqrt(sum_sq / n - mean * mean), 16, 0.5);
  auto wide = LengthDistribution::Parse("gen-len", "normal:2:50");
  for (int i = 0; i < 1000; ++i) {
    const int32_t v = wide->Sample(rng);
    EXPECT_GE(v, 1);
    EXPECT_LE(v, wide->Max());
  }
}

TEST(LengthDistribution, SameSeedGivesSameLengths) {
  auto d = LengthDistribution::Parse("gen-len", "uniform:1:1000");
  std::mt19937_64 a(9), b(9);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(d->Sample(a), d->Sample(b));
}

TEST(LengthDistribution, RejectsMalformedSpecsNamingTheFlag) {
  for (const char* bad : {"", "0", "-3", "1.5", "abc", "uniform:10", "uniform:20:10", "uniform:0:5",
                          "normal:64", "normal:64:-1", "poisson:3:4", "uniform:1:2:3"}) {
    auto d = LengthDistribution::Parse("prompt-len", bad);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(d.status().message(), HasSubstr("--prompt-len")) << bad;
  }
}

TEST(LengthDistribution, ToStringRoundTrips) {
  for (const char* spec : {"64", "uniform:16:128", "normal:64:16", "normal:100.5:2.25"}) {
    auto d = LengthDistribution::Parse("x", spec);
    ASSERT_TRUE(d.ok()) << spec;
    EXPECT_EQ(d->ToString(), spec);
  }
}

}  // namespace
}  // namespace kvstream::client
