// Percentile summaries (client/latency_stats.h). No server.
#include "client/latency_stats.h"

#include "gtest/gtest.h"

namespace kvstream::client {
namespace {

TEST(Summarize, PercentilesInterpolateBetweenClosestRanks) {
  Summary s = Summarize({4, 1, 3, 2});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(*s.p50, 2.5);
  EXPECT_DOUBLE_EQ(*s.p90, 3.7);
  EXPECT_DOUBLE_EQ(*s.p99, 3.97);
  EXPECT_DOUBLE_EQ(*s.mean, 2.5);
  EXPECT_DOUBLE_EQ(*s.min, 1);
  EXPECT_DOUBLE_EQ(*s.max, 4);
}

TEST(Summarize, OneValueIsEveryPercentile) {
  Summary s = Summarize({7});
  EXPECT_DOUBLE_EQ(*s.p50, 7);
  EXPECT_DOUBLE_EQ(*s.p99, 7);
}

TEST(Summarize, PercentilesAreOrdered) {
  std::vector<double> v;
  for (int i = 0; i < 1000; ++i) v.push_back((i * 7919) % 1000);
  Summary s = Summarize(v);
  EXPECT_LE(*s.min, *s.p50);
  EXPECT_LE(*s.p50, *s.p90);
  EXPECT_LE(*s.p90, *s.p99);
  EXPECT_LE(*s.p99, *s.max);
}

TEST(SummaryJson, EmptyInputGivesZeroCountAndNulls) {
  nlohmann::ordered_json j = SummaryJson(Summarize({}));
  EXPECT_EQ(j["count"], 0);
  for (const char* key : {"mean", "p50", "p90", "p99", "min", "max"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_TRUE(j[key].is_null()) << key;
  }
}

}  // namespace
}  // namespace kvstream::client
