// Bench and eval aggregation (client/bench_report.h, client/eval_report.h)
// from made-up outcomes, and --json=FILE handling. No server.
#include <cmath>

#include "client/bench_report.h"
#include "client/eval_report.h"
#include "client/load_flags.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstream::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(RewriteJsonFileArg, FileValuesBecomeJsonFileAndBoolsStay) {
  std::vector<std::string> args = {"kvstream", "bench", "--json=out.json", "--json", "--json=false", "--json=TRUE",
                                   "--prompt=--json=x"};
  RewriteJsonFileArg(args);
  EXPECT_THAT(args, ElementsAre("kvstream", "bench", "--json-file=out.json", "--json", "--json=false", "--json=TRUE",
                                "--prompt=--json=x"));
}

CallOutcome Ok(double ttft, std::vector<double> itl, double e2e, int tokens, int64_t kv_bytes) {
  CallOutcome c;
  c.ttft_ms = ttft;
  c.itl_ms = std::move(itl);
  c.e2e_ms = e2e;
  c.result.emplace();
  c.result->mutable_usage()->set_completion_tokens(tokens);
  c.result->mutable_usage()->set_prompt_tokens(100);
  c.result->mutable_cache()->set_kv_bytes_device(kv_bytes);
  c.result->mutable_cache()->set_compression_ratio(2.0);
  return c;
}

TEST(BenchPhaseJson, CountsErrorsByCodeAndThroughputOverTheWall) {
  BenchPhase p;
  p.label = "dense";
  p.concurrency = 2;
  p.wall_s = 2.0;
  p.calls.push_back(Ok(10, {5, 7}, 30, 3, 1000));
  p.calls.push_back(Ok(20, {6, 8}, 40, 3, 3000));
  CallOutcome failed;
  failed.status = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no");
  p.calls.push_back(failed);
  p.calls.push_back(failed);
  const nlohmann::ordered_json j = BenchPhaseJson(p);
  EXPECT_EQ(j["requests"], 4);
  EXPECT_EQ(j["ok"], 2);
  EXPECT_EQ(j["errors"]["UNIMPLEMENTED"], 2);
  EXPECT_DOUBLE_EQ(j["ttft_ms"]["p50"].get<double>(), 15);
  EXPECT_EQ(j["itl_ms"]["count"], 4);
  EXPECT_DOUBLE_EQ(j["output_tok_s"].get<double>(), 3.0);  // 6 tokens / 2 s
  EXPECT_DOUBLE_EQ(j["requests_s"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["kv_bytes_held"]["mean"].get<double>(), 2000);
  EXPECT_DOUBLE_EQ(j["compression_ratio"]["mean"].get<double>(), 2.0);
  const std::string table = BenchTable(nlohmann::ordered_json::array({j}));
  EXPECT_THAT(table, HasSubstr("UNIMPLEMENTED=2"));
  EXPECT_THAT(table, HasSubstr("2/4"));
}

struct EvalFixture {
  EvalSettings settings;
  std::vector<StrategyRun> runs;
  std::vector<EvalCase> cases;
  EvalResults results;

  EvalFixture() {
    settings.tasks = {EvalTask::kPasskey, EvalTask::kPpl, EvalTask::kAgreement};
    settings.agreement_tokens = 4;
    runs = *ParseStrategies("dense,dense,akv", {});
    cases.push_back({EvalTask::kPasskey, 512, 0, 0, "12345", {}});
    cases.push_back({EvalTask::kPasskey, 512, 100, 0, "54321", {}});
    cases.push_back({EvalTask::kPpl, 512, -1, 0, "", {}});
    cases.push_back({EvalTask::kAgreement, 512, -1, 0, "", {}});
    results.settings = &settings;
    results.runs = &runs;
    results.cases = &cases;
    results.reference = 0;
    results.outcomes.assign(3, std::vector<EvalOutcome>(4));
    for (int r = 0; r < 2; ++r) {
      auto& o = results.outcomes[static_cast<size_t>(r)];
      o[0].text = " 12345.";
      o[1].text = " 11111.";
      o[2].logprobs = {-1.0f, -2.0f, -3.0f};
      o[3].tokens = {1, 2, 3, 4};
    }
    results.outcomes[1][3].tokens = {1, 2, 9, 4};
    results.outcomes[1][2].logprobs = {-2.0f, -2.0f, -3.0f};
    for (auto& o : results.outcomes[2]) {
      o.code = 12;  // UNIMPLEMENTED
      o.error = "not built";
    }
  }
};

TEST(EvalStrategiesJson, ScoresAgainstTheDenseReference) {
  EvalFixture f;
  const nlohmann::ordered_json s = EvalStrategiesJson(f.results);
  ASSERT_EQ(s.size(), 3u);
  // dense vs itself: ratio exactly 1, every prompt identical.
  EXPECT_DOUBLE_EQ(s[0]["ppl"]["ppl_ratio_vs_dense"].get<double>(), 1.0);
  EXPECT_NEAR(s[0]["ppl"]["ppl"].get<double>(), std::exp(2.0), 1e-9);
  EXPECT_DOUBLE_EQ(s[0]["agreement"]["fully_identical_pct"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(s[0]["agreement"]["mean_agreeing_prefix"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(s[0]["passkey"]["accuracy"].get<double>(), 0.5);
  ASSERT_EQ(s[0]["passkey"]["cells"].size(), 2u);
  EXPECT_EQ(s[0]["passkey"]["cells"][0]["accuracy"], 1.0);
  EXPECT_EQ(s[0]["passkey"]["cells"][1]["accuracy"], 0.0);
  // dense#2 differs: one more nat on one token of three, diverges at token 2.
  EXPECT_NEAR(s[1]["ppl"]["ppl_ratio_vs_dense"].get<double>(), std::exp(1.0 / 3.0), 1e-6);
  EXPECT_DOUBLE_EQ(s[1]["agreement"]["fully_identical_pct"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(s[1]["agreement"]["mean_agreeing_prefix"].get<double>(), 2.0);
  // akv answered nothing: nulls, errors by code.
  EXPECT_EQ(s[2]["errors"]["UNIMPLEMENTED"], 4);
  EXPECT_TRUE(s[2]["passkey"]["accuracy"].is_null());
  EXPECT_TRUE(s[2]["ppl"]["ppl"].is_null());
  EXPECT_TRUE(s[2]["agreement"]["fully_identical_pct"].is_null());
  EXPECT_EQ(s[2]["ok"], 0);
  const std::string table = EvalTable(s);
  EXPECT_THAT(table, HasSubstr("UNIMPLEMENTED=4"));
  EXPECT_THAT(table, HasSubstr("dense#2"));
}

TEST(EvalPlotScript, DrawsOneHeatMapPerStrategy) {
  EvalFixture f;
  nlohmann::ordered_json report;
  report["model"]["name"] = "m";
  report["strategies"] = EvalStrategiesJson(f.results);
  const std::string script = EvalPlotScript(report, "/tmp/x'y.png");
  EXPECT_THAT(script, HasSubstr("set output '/tmp/x''y.png'"));
  EXPECT_THAT(script, HasSubstr("multiplot layout 3,1"));
  EXPECT_THAT(script, HasSubstr("(no answers)"));  // akv
}

}  // namespace
}  // namespace kvstream::client
