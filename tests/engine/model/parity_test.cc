// Greedy tokens and their logprobs equal Hugging Face transformers (fp32, CPU)
// on the same GGUF file. The oracle's outputs are the committed fixture made by
// tests/oracle/parity_make_fixture.py; KVSTREAM_LIVE_ORACLE=1 re-runs it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

using nlohmann::json;

json LoadOracle() {
  std::string path = testing::FixtureDir() + "/parity/smollm2_greedy.json";
  if (std::getenv("KVSTREAM_LIVE_ORACLE") != nullptr && !testing::Python().empty()) {
    const std::string out = ::testing::TempDir() + "/parity_live.json";
    const std::string cmd = testing::Python() + " " + testing::SourceDir() +
                            "/tests/oracle/parity_make_fixture.py --model " +
                            testing::DefaultModelPath() + " --out " + out + " 2>/dev/null";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    path = out;
  }
  std::ifstream f(path);
  return json::parse(f);
}

void ExpectMatchesOracle(Engine& engine, const json& p, const GenerateOutcome& o) {
  const auto want = p["tokens"].get<std::vector<int32_t>>();
  const auto want_lp = p["logprobs"].get<std::vector<double>>();
  ASSERT_EQ(o.token_ids, want) << "prompt " << p["name"];
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(o.logprobs[i] - want_lp[i]));
  EXPECT_LT(worst, 1e-3) << "prompt " << p["name"] << ": max |delta logprob|";
  std::printf("[parity] %-10s %zu tokens equal, max |dlogprob| = %.2e\n",
              p["name"].get<std::string>().c_str(), want.size(), worst);
}

TEST(LlamaParity, GreedyTokensAndLogprobsMatchTransformers) {
  KV_REQUIRE_MODEL(engine);
  const json oracle = LoadOracle();
  ASSERT_GE(oracle["prompts"].size(), 6u);
  const int32_t n = oracle["new_tokens"].get<int32_t>();
  for (const json& p : oracle["prompts"]) {
    GenerateSpec spec = testing::GreedySpec(p["prompt_ids"].get<std::vector<int32_t>>(), n);
    auto r = engine->GenerateBatch({spec});
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectMatchesOracle(*engine, p, (*r)[0]);
  }
}

TEST(LlamaParity, PromptTokenizationMatchesTransformers) {
  KV_REQUIRE_MODEL(engine);
  for (const json& p : LoadOracle()["prompts"]) {
    EXPECT_EQ(engine->tokenizer().Encode(p["text"].get<std::string>(), false),
              p["prompt_ids"].get<std::vector<int32_t>>())
        << "prompt " << p["name"];
  }
}

TEST(LlamaParity, ChunkedPrefillGivesSameTokens) {
  KV_REQUIRE_MODEL(engine);
  const json oracle = LoadOracle();
  const json& p = oracle["prompts"][6];  // the long prompt: 153 tokens
  GenerateSpec spec = testing::GreedySpec(p["prompt_ids"].get<std::vector<int32_t>>(), 32);
  EngineOptions o;
  o.model_path = testing::DefaultModelPath();
  o.device = "cpu";
  o.prefill_chunk = 37;  // awkward on purpose: 5 chunks, the last partial
  auto chunked = Engine::Load(o);
  ASSERT_TRUE(chunked.ok()) << chunked.status();
  auto r = (*chunked)->GenerateBatch({spec});
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectMatchesOracle(**chunked, p, (*r)[0]);
}

}  // namespace
}  // namespace kvstream
