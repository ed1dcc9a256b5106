#include "engine/sampling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "engine/runtime/generation.h"

namespace kvstream {
namespace {

std::vector<float> RandomLogits(int n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> x(n);
  for (float& v : x) v = d(g);
  return x;
}

TEST(Sampler, GreedyPicksArgmaxAndReportsItsLogSoftmax) {
  std::vector<float> x = {0.5f, 2.0f, -1.0f, 2.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p, {});
  SampleResult r = s.Next(x, 2);
  EXPECT_EQ(r.token_id, 1);  // first of the tied maxima
  double z = 0;
  for (float v : x) z += std::exp(v);
  EXPECT_NEAR(r.logprob, 2.0 - std::log(z), 1e-6);
  ASSERT_EQ(r.top.size(), 2u);
  EXPECT_EQ(r.top[0].token_id, 1);
  EXPECT_EQ(r.top[1].token_id, 3);
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p, {});
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.Next(RandomLogits(500, i), 0).token_id);
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(Sampler, TopKNeverLeavesTheKBest) {
  SamplingParams p;
  p.top_k = 3;
  p.seed = 7;
  std::vector<float> x = RandomLogits(100, 1);
  std::vector<int32_t> idx(100);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return x[a] > x[b]; });
  Sampler s(p, {});
  for (int i = 0; i < 300; ++i) {
    int32_t t = s.Next(x, 0).token_id;
    EXPECT_TRUE(t == idx[0] || t == idx[1] || t == idx[2]) << t;
  }
}

TEST(Sampler, TopPKeepsSmallestNucleus) {
  // p = softmax([ln .5, ln .3, ln .15, ln .05]); top_p .7 keeps tokens 0 and 1 only.
  std::vector<float> x = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingParams p;
  p.top_p = 0.7f;
  p.seed = 3;
  Sampler s(p, {});
  std::map<int32_t, int> count;
  for (int i = 0; i < 2000; ++i) count[s.Next(x, 0).token_id]++;
  EXPECT_EQ(count.count(2) + count.count(3), 0u);
  EXPECT_NEAR(count[0] / 2000.0, 0.5 / 0.8, 0.05);
}

TEST(Sampler, TemperatureMatchesSoftmaxFrequencies) {
  std::vector<float> x = {1.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0.5f;
  p.seed = 11;
  Sampler s(p, {});
  int ones = 0;
  for (int i = 0; i < 4000; ++i) ones += s.Next(x, 0).token_id == 0;
  const double want = 1.0 / (1.0 + std::exp(-2.0));
  EXPECT_NEAR(ones / 4000.0, want, 0.03);
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
  std::vector<float> x = {2.0f, 1.9f, -1.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 1.5f;
  Sampler s(p, std::vector<int32_t>{0});  // token 0 in the prompt: 2.0 -> 1.33
  EXPECT_EQ(s.Next(x, 0).token_id, 1);
}

TEST(Sampler, ForcedTokenReportsItsLogprob) {
  std::vector<float> x = {0.0f, 1.0f};
  SamplingParams p;
  Sampler s(p, {});
  SampleResult r = s.Next(x, 0, /*forced=*/0);
  EXPECT_EQ(r.token_id, 0);
  EXPECT_NEAR(r.logprob, -std::log(1 + std::exp(1.0)), 1e-6);
}

TEST(StopMatcher, HoldsBackPartialStopAndCutsAtTheStop) {
  StopMatcher m({"END", "\n\n"});
  bool stopped = false;
  EXPECT_EQ(m.Push("Hello E", &stopped), "Hello ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.Push("N", &stopped), "");
  EXPECT_EQ(m.Push("X more\n", &stopped), "ENX more");
  EXPECT_EQ(m.Push("\nbye", &stopped), "");
  EXPECT_TRUE(stopped);
}

TEST(StopMatcher, NoStopsPassesEverythingThrough) {
  StopMatcher m({});
  bool stopped = true;
  EXPECT_EQ(m.Push("abc", &stopped), "abc");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.Flush(), "");
}

}  // namespace
}  // namespace kvstream
