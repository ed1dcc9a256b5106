// `kvstream bench` and `kvstream eval` end to end: the real CLI binary
// against the real server on loopback (tests/client/cli_test_server.h), with
// CI-sized settings (contexts <= 1024, a few requests); checks the JSON
// reports field by field.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/client/cli_test_server.h"
#include "tests/test_paths.h"

namespace kvstream::client {
namespace {

using Json = nlohmann::json;
using testing::CliTestServer;

struct CliRun {
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Appends `s` to `cmd` single-quoted for /bin/sh.
void AppendQuoted(std::string& cmd, const std::string& s) {
  cmd.push_back('\'');
  for (char c : s) {
    if (c == '\'') {
      cmd.append("'\\''");
    } else {
      cmd.push_back(c);
    }
  }
  cmd.push_back('\'');
}

CliRun RunKvstream(const std::vector<std::string>& args) {
  // Per process: ctest runs each TEST as its own process, side by side.
  const std::string err = ::testing::TempDir() + "/kvstream_cli_stderr_" + std::to_string(getpid()) + ".txt";
  std::string cmd;
  AppendQuoted(cmd, ::kvstream::testing::BinaryDir() + "/kvstream");
  for (const std::string& a : args) {
    cmd.push_back(' ');
    AppendQuoted(cmd, a);
  }
  cmd.append(" 2>");
  AppendQuoted(cmd, err);
  CliRun run;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return run;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) run.stdout_text.append(buf, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.stderr_text = ReadFile(err);
  return run;
}

Json ReadJson(const std::string& path) {
  Json j = Json::parse(ReadFile(path), nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << path << " is not JSON";
  return j;
}

bool IsPng(const std::string& path) { return ReadFile(path).rfind("\x89PNG", 0) == 0; }

void ExpectSummary(const Json& s, const std::string& what) {
  for (const char* key : {"count", "mean", "p50", "p90", "p99", "min", "max"}) {
    ASSERT_TRUE(s.contains(key)) << what << "." << key;
  }
  if (s["count"].get<int>() == 0) return;
  EXPECT_LE(s["min"].get<double>(), s["p50"].get<double>()) << what;
  EXPECT_LE(s["p50"].get<double>(), s["p90"].get<double>()) << what;
  EXPECT_LE(s["p90"].get<double>(), s["p99"].get<double>()) << what;
  EXPECT_LE(s["p99"].get<double>(), s["max"].get<double>()) << what;
}

// A strategy the server may or may not have built: either every request
// succeeded or every one was UNIMPLEMENTED (reported, not a crash).
void ExpectServedOrUnimplemented(const Json& entry, int requests) {
  if (entry["ok"].get<int>() == requests) return;
  EXPECT_EQ(entry["ok"].get<int>(), 0) << entry.dump();
  EXPECT_EQ(entry["errors"].value("UNIMPLEMENTED", 0), requests) << entry.dump();
}

class BenchEvalCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = CliTestServer::Start({"--max-batch=8"}).release(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "server did not start";
  }
  std::string Target() const { return "--target=" + server_->target(); }
  std::string Temp(const std::string& name) const {
    return ::testing::TempDir() + "/" + std::to_string(getpid()) + "_" + name;
  }

  static CliTestServer* server_;
};
CliTestServer* BenchEvalCliTest::server_ = nullptr;

TEST_F(BenchEvalCliTest, DensePasskeyAt1KIsAtLeast90Percent) {
  const std::string json = Temp("eval_passkey.json"), png = Temp("eval_passkey.png");
  std::remove(png.c_str());
  CliRun run = RunKvstream({"eval", Target(), "--strategies=dense,akv", "--tasks=passkey", "--contexts=1024",
                            "--depths=0,25,50,75,100", "--samples=2", "--concurrency=4", "--seed=1",
                            "--json=" + json, "--plot=" + png});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_THAT(run.stdout_text, ::testing::HasSubstr("passkey accuracy, dense"));
  EXPECT_THAT(run.stderr_text, ::testing::HasSubstr("eval ["));  // the progress bar
  const Json report = ReadJson(json);
  ASSERT_EQ(report["strategies"].size(), 2u);
  const Json& dense = report["strategies"][0];
  EXPECT_EQ(dense["label"], "dense");
  EXPECT_TRUE(dense["reference"].get<bool>());
  const Json& pk = dense["passkey"];
  EXPECT_EQ(pk["samples"], 10);
  EXPECT_GE(pk["accuracy"].get<double>(), 0.9) << pk.dump();
  ASSERT_EQ(pk["cells"].size(), 5u);
  for (const Json& cell : pk["cells"]) {
    EXPECT_EQ(cell["context"], 1024);
    EXPECT_EQ(cell["samples"], 2);
  }
  EXPECT_EQ(report["settings"]["prompt_format"], "chatml");
  ExpectServedOrUnimplemented(report["strategies"][1], 10);
  EXPECT_TRUE(IsPng(png)) << run.stderr_text;
}

TEST_F(BenchEvalCliTest, DenseAgainstDenseScoresPerplexityRatioOneAndFullAgreement) {
  const std::string json = Temp("eval_dense_dense.json");
  CliRun run = RunKvstream({"eval", Target(), "--strategies=dense,dense", "--tasks=passkey,needle,ppl,agreement",
                            "--contexts=256", "--depths=50", "--samples=2", "--ppl-tokens=32",
                            "--agreement-tokens=16", "--concurrency=4", "--json=" + json});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const Json report = ReadJson(json);
  for (const char* key : {"kind", "command", "target", "model", "settings", "reference", "wall_s", "strategies"}) {
    EXPECT_TRUE(report.contains(key)) << key;
  }
  EXPECT_EQ(report["model"]["context_length"], 8192);
  ASSERT_EQ(report["strategies"].size(), 2u);
  for (const Json& s : report["strategies"]) {
    SCOPED_TRACE(s["label"].get<std::string>());
    EXPECT_EQ(s["ok"], 8);
    EXPECT_TRUE(s["errors"].empty());
    ExpectSummary(s["cache"]["kv_bytes_held"], "kv_bytes_held");
    EXPECT_GT(s["cache"]["kv_bytes_held"]["mean"].get<double>(), 0);
    EXPECT_GT(s["cache"]["compression_ratio"]["mean"].get<double>(), 0);
    for (const char* task : {"passkey", "needle"}) {
      ASSERT_TRUE(s.contains(task)) << task;
      EXPECT_EQ(s[task]["samples"], 2);
      EXPECT_GE(s[task]["accuracy"].get<double>(), 0.0);
      EXPECT_LE(s[task]["accuracy"].get<double>(), 1.0);
    }
    const Json& ppl = s["ppl"];
    EXPECT_EQ(ppl["documents"], 2);
    EXPECT_EQ(ppl["tokens"], 64);
    EXPECT_GT(ppl["ppl"].get<double>(), 1.0);
    EXPECT_LT(ppl["ppl"].get<double>(), 1000.0);
    EXPECT_NEAR(ppl["ppl_ratio_vs_dense"].get<double>(), 1.0, 5e-4);  // "1.000"
    const Json& ag = s["agreement"];
    EXPECT_EQ(ag["prompts"], 2);
    EXPECT_EQ(ag["tokens_compared"], 16);
    EXPECT_DOUBLE_EQ(ag["fully_identical_pct"].get<double>(), 100.0);
    EXPECT_DOUBLE_EQ(ag["mean_agreeing_prefix"].get<double>(), 16.0);
  }
  EXPECT_EQ(report["strategies"][1]["label"], "dense#2");
  EXPECT_THAT(run.stdout_text, ::testing::HasSubstr("ppl/dense"));
}

TEST_F(BenchEvalCliTest, BenchReportsPercentilesThroughputAndCachePerStrategy) {
  const std::string json = Temp("bench.json"), png = Temp("bench.png");
  std::remove(png.c_str());
  CliRun run = RunKvstream({"bench", Target(), "--strategies=dense,laser_kv", "--concurrency=1,2", "--requests=3",
                            "--prompt-len=uniform:16:48", "--gen-len=8", "--seed=3", "--json=" + json,
                            "--plot=" + png});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, ::testing::HasSubstr("dense c=2 ["));
  const Json report = ReadJson(json);
  EXPECT_EQ(report["kind"], "kvstream-bench");
  EXPECT_EQ(report["settings"]["prompt_len"], "uniform:16:48");
  ASSERT_EQ(report["runs"].size(), 4u);
  for (const Json& r : report["runs"]) {
    SCOPED_TRACE(r["strategy"].get<std::string>() + " c=" + std::to_string(r["concurrency"].get<int>()));
    for (const char* key : {"strategy", "concurrency", "request_rate", "mode", "requests", "ok", "errors", "wall_s",
                            "ttft_ms", "itl_ms", "e2e_ms", "output_tok_s", "requests_s", "prompt_tokens",
                            "completion_tokens", "kv_bytes_held", "peak_kv_bytes_max", "compression_ratio",
                            "server_queue_ms", "server_ttft_ms"}) {
      EXPECT_TRUE(r.contains(key)) << key;
    }
    EXPECT_EQ(r["requests"], 3);
    EXPECT_EQ(r["mode"], "closed");
    if (r["strategy"] == "laser_kv") {
      ExpectServedOrUnimplemented(r, 3);
      continue;
    }
    EXPECT_EQ(r["ok"], 3);
    for (const char* s : {"ttft_ms", "itl_ms", "e2e_ms", "kv_bytes_held", "prompt_tokens"}) ExpectSummary(r[s], s);
    EXPECT_EQ(r["itl_ms"]["count"], 3 * 7);  // 7 gaps between 8 tokens, per request
    EXPECT_DOUBLE_EQ(r["completion_tokens"]["mean"].get<double>(), 8.0);
    EXPECT_GE(r["prompt_tokens"]["min"].get<double>(), 16);
    EXPECT_LE(r["prompt_tokens"]["max"].get<double>(), 48);
    EXPECT_GT(r["ttft_ms"]["p50"].get<double>(), 0);
    EXPECT_LT(r["ttft_ms"]["p50"].get<double>(), r["e2e_ms"]["p50"].get<double>());
    EXPECT_GT(r["output_tok_s"].get<double>(), 0);
    EXPECT_NEAR(r["output_tok_s"].get<double>(), 24 / r["wall_s"].get<double>(), 1e-6);
    EXPECT_GT(r["kv_bytes_held"]["mean"].get<double>(), 0);
    EXPECT_GT(r["compression_ratio"]["mean"].get<double>(), 0);
  }
  EXPECT_TRUE(IsPng(png)) << run.stderr_text;
}

TEST_F(BenchEvalCliTest, BenchPoissonArrivalsRunOpenLoop) {
  CliRun run = RunKvstream({"bench", Target(), "--request-rate=4", "--concurrency=0", "--requests=4",
                            "--prompt-len=32", "--gen-len=normal:4:1", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const Json report = Json::parse(run.stdout_text, nullptr, false);  // --json alone: stdout
  ASSERT_FALSE(report.is_discarded()) << run.stdout_text;
  ASSERT_EQ(report["runs"].size(), 1u);
  EXPECT_EQ(report["runs"][0]["mode"], "poisson");
  EXPECT_EQ(report["runs"][0]["ok"], 4);
  EXPECT_DOUBLE_EQ(report["runs"][0]["request_rate"].get<double>(), 4.0);
}

TEST_F(BenchEvalCliTest, BadFlagValuesAreUsageErrors) {
  CliRun bench = RunKvstream({"bench", Target(), "--gen-len=uniform:5"});
  EXPECT_EQ(bench.exit_code, 2);
  EXPECT_THAT(bench.stderr_text, ::testing::HasSubstr("--gen-len"));
  CliRun eval = RunKvstream({"eval", Target(), "--tasks=passkey,trivia"});
  EXPECT_EQ(eval.exit_code, 2);
  EXPECT_THAT(eval.stderr_text, ::testing::HasSubstr("trivia"));
  CliRun knob = RunKvstream({"eval", Target(), "--strategies=dense", "--kv=hot_budget=64"});
  EXPECT_EQ(knob.exit_code, 2);
  EXPECT_THAT(knob.stderr_text, ::testing::HasSubstr("hot_budget"));
}

}  // namespace
}  // namespace kvstream::client
