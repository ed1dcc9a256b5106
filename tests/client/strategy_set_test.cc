// --strategies and --kv for bench and eval (client/strategy_set.h). No server.
#include "client/strategy_set.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstream::client {
namespace {

using ::testing::HasSubstr;

TEST(ParseStrategies, RepeatedStrategyGetsNumberedLabels) {
  auto runs = ParseStrategies("dense, akv,dense", {});
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 3u);
  EXPECT_EQ((*runs)[0].label, "dense");
  EXPECT_EQ((*runs)[1].label, "akv");
  EXPECT_EQ((*runs)[2].label, "dense#2");
  EXPECT_TRUE((*runs)[0].kv.has_dense());
  EXPECT_TRUE((*runs)[1].kv.has_akv());
  EXPECT_TRUE((*runs)[2].kv.has_dense());
}

TEST(ParseStrategies, KnobGoesOnlyToTheStrategiesThatHaveIt) {
  auto runs = ParseStrategies("dense,akv,sam_gate", {"hot_budget=256,warm_bits=8", "tau=0.1"});
  ASSERT_TRUE(runs.ok()) << runs.status();
  EXPECT_EQ((*runs)[0].kv.ByteSizeLong(), kvstream::v1::KvCompression().ByteSizeLong() + 2);  // dense {}
  EXPECT_EQ((*runs)[1].kv.akv().hot_budget(), 256u);
  EXPECT_EQ((*runs)[1].kv.akv().warm_bits(), 8u);
  EXPECT_FALSE((*runs)[1].kv.akv().has_warm_budget());
  EXPECT_FLOAT_EQ((*runs)[2].kv.sam_gate().tau(), 0.1f);
  EXPECT_EQ(DescribeStrategy((*runs)[1]), "akv: hot_budget=256 warm_bits=8");
  EXPECT_EQ(DescribeStrategy((*runs)[0]), "dense");
}

TEST(ParseStrategies, QualifiedKnobTouchesOnlyItsStrategy) {
  auto runs = ParseStrategies("akv,akv", {"akv.hot_budget=128"});
  ASSERT_TRUE(runs.ok()) << runs.status();
  EXPECT_EQ((*runs)[0].kv.akv().hot_budget(), 128u);
  EXPECT_EQ((*runs)[1].kv.akv().hot_budget(), 128u);
  auto other = ParseStrategies("dense", {"akv.hot_budget=128"});
  EXPECT_THAT(other.status().message(), HasSubstr("not in --strategies"));
}

TEST(ParseStrategies, KnobThatNoListedStrategyHasIsRejected) {
  auto runs = ParseStrategies("dense,akv", {"tau=0.1"});
  EXPECT_EQ(runs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(runs.status().message(), HasSubstr("tau"));
  EXPECT_THAT(runs.status().message(), HasSubstr("hot_budget"));  // lists what akv has
}

TEST(ParseStrategies, BadValueAndUnknownStrategyAreRejected) {
  EXPECT_EQ(ParseStrategies("akv", {"hot_budget=lots"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ParseStrategies("dense,h2o", {}).status().message(), HasSubstr("h2o"));
  EXPECT_EQ(ParseStrategies(" , ", {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
TEST(StrategySet, LabelQualifiedKnobsSetOneRunOfARepeatedStrategy) {
  auto runs = ParseStrategies("dense,akv,akv,akv", {"akv#2.warm_bits=2,akv#3.scoring_strategy=fifo,hot_budget=256"});
  ASSERT_TRUE(runs.ok()) << runs.status();
  EXPECT_FALSE((*runs)[1].kv.akv().has_warm_bits());
  EXPECT_EQ((*runs)[2].kv.akv().warm_bits(), 2u);
  EXPECT_EQ((*runs)[3].kv.akv().scoring_strategy(), v1::AkvConfig::AKV_SCORING_STRATEGY_FIFO);
  for (int i = 1; i < 4; ++i) EXPECT_EQ((*runs)[i].kv.akv().hot_budget(), 256u);
  EXPECT_FALSE(ParseStrategies("akv", {"akv#2.warm_bits=2"}).ok());
}

}  // namespace kvstream::client
