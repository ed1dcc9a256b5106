// kvstream bench: load against a running server, per strategy and
// concurrency level. The same prompts (real corpus text cut to
// --prompt-len tokens, sent as prompt_token_ids) and generation lengths
// (EOS ignored, greedy) are replayed for every strategy and level. Closed
// loop with --concurrency workers, or Poisson arrivals at --request-rate.
// Progress on stderr; table on stdout; --json / --json=FILE; --plot.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/bench_report.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/corpus.h"
#include "client/eval_plan.h"
#include "client/flags.h"
#include "client/gnuplot_pipe.h"
#include "client/length_distribution.h"
#include "client/load_flags.h"
#include "client/output.h"
#include "client/progress_bar.h"
#include "client/report_output.h"
#include "client/request_pool.h"
#include "client/strategy_set.h"

namespace kvstream::client {
namespace {

using Json = nlohmann::ordered_json;

struct BenchRequest {
  std::vector<int32_t> prompt;
  int32_t gen_len = 1;
};

absl::StatusOr<std::vector<BenchRequest>> BuildRequests(int32_t n, const LengthDistribution& prompt_len,
                                                        const LengthDistribution& gen_len, int32_t model_context,
                                                        uint64_t seed, const Corpus& corpus,
                                                        TextTokenizer& tokenizer) {
  std::vector<BenchRequest> out;
  ProgressBar bar("preparing prompts", n);
  for (int32_t i = 0; i < n; ++i) {
    std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(i)};
    std::mt19937_64 rng(seq);
    BenchRequest r;
    r.gen_len = std::min(gen_len.Sample(rng), model_context - 1);
    const int32_t plen = std::clamp(prompt_len.Sample(rng), 1, model_context - r.gen_len);
    auto window = corpus.TokenWindow(tokenizer, plen, rng);
    if (!window.ok()) return window.status();
    r.prompt = std::move(window->ids);
    out.push_back(std::move(r));
    bar.Advance();
  }
  return out;
}

BenchPhase RunPhase(const Connection& conn, const StrategyRun& strategy, int concurrency, double rate,
                    uint64_t seed, const std::vector<BenchRequest>& requests) {
  BenchPhase phase;
  phase.label = strategy.label;
  phase.strategy = strategy.name;
  phase.description = DescribeStrategy(strategy);
  phase.concurrency = concurrency;
  phase.request_rate = rate;
  phase.calls.resize(requests.size());
  auto stub = kvstream::v1::Generation::NewStub(conn.channel());
  ProgressBar bar(rate > 0 ? absl::StrFormat("%s rate=%.2f/s", strategy.label, rate)
                           : absl::StrCat(strategy.label, " c=", concurrency),
                  static_cast<int64_t>(requests.size()));
  std::atomic<int64_t> errors{0};
  auto one = [&](int64_t i, SteadyClock::time_point start) {
    const BenchRequest& br = requests[static_cast<size_t>(i)];
    kvstream::v1::GenerateRequest request;
    request.set_request_id(absl::StrCat("bench-", strategy.label, "-c", concurrency, "-", i));
    request.mutable_prompt_token_ids()->mutable_ids()->Add(br.prompt.begin(), br.prompt.end());
    request.mutable_sampling()->set_max_new_tokens(br.gen_len);
    request.mutable_sampling()->set_temperature(0);
    request.mutable_sampling()->set_ignore_eos(true);
    *request.mutable_kv_compression() = strategy.kv;
    CallOutcome call = CallGenerate(conn, *stub, request, start);
    if (!call.status.ok()) ++errors;
    phase.calls[static_cast<size_t>(i)] = std::move(call);
    bar.Advance(errors > 0 ? absl::StrCat(errors.load(), " errors") : "");
  };
  const auto t0 = SteadyClock::now();
  if (rate > 0) {
    std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
    RunOpenLoop(PoissonArrivals(rate, static_cast<int64_t>(requests.size()), rng), concurrency, one);
  } else {
    RunClosedLoop(concurrency, static_cast<int64_t>(requests.size()), one);
  }
  phase.wall_s = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  return phase;
}

}  // namespace

int RunBench(const ParsedArgs& args) {
  auto runs = ParseStrategies(absl::GetFlag(FLAGS_strategies), args.All("kv"));
  if (!runs.ok()) return ReportUsageError(runs.status());
  const double rate = absl::GetFlag(FLAGS_request_rate);
  if (!(rate >= 0)) return ReportUsageError(absl::InvalidArgumentError("--request-rate must be >= 0"));
  auto levels = ParseIntList("concurrency", absl::GetFlag(FLAGS_concurrency), rate > 0 ? 0 : 1, 4096);
  if (!levels.ok()) return ReportUsageError(levels.status());
  const int32_t n = absl::GetFlag(FLAGS_requests);
  if (n < 1) return ReportUsageError(absl::InvalidArgumentError("--requests must be >= 1"));
  auto prompt_len = LengthDistribution::Parse("prompt-len", absl::GetFlag(FLAGS_prompt_len));
  if (!prompt_len.ok()) return ReportUsageError(prompt_len.status());
  auto gen_len = LengthDistribution::Parse("gen-len", absl::GetFlag(FLAGS_gen_len));
  if (!gen_len.ok()) return ReportUsageError(gen_len.status());
  const uint64_t seed = absl::GetFlag(FLAGS_seed);

  auto conn = Connection::Open(ConnectionOptionsFromFlags());
  if (!conn.ok()) return ReportUsageError(conn.status());
  auto info = FetchModelInfo(*conn);
  if (!info.ok()) return ReportFailure(info.status());
  const std::string corpus_dir = CorpusDir(absl::GetFlag(FLAGS_corpus));
  auto corpus = Corpus::Load(corpus_dir);
  if (!corpus.ok()) return ReportFailure(corpus.status());
  RemoteTokenizer tokenizer(*conn);
  auto requests = BuildRequests(n, *prompt_len, *gen_len, info->context_length(), seed, *corpus, tokenizer);
  if (!requests.ok()) return ReportFailure(requests.status());

  Json report;
  report["kind"] = "kvstream-bench";
  report["command"] = CommandLineOf(args, "bench");
  report["target"] = absl::GetFlag(FLAGS_target);
  report["model"] = ModelJson(*info);
  Json settings;
  settings["requests"] = n;
  settings["concurrency"] = *levels;
  settings["request_rate"] = rate;
  settings["prompt_len"] = prompt_len->ToString();
  settings["gen_len"] = gen_len->ToString();
  settings["seed"] = seed;
  settings["sampling"] = "greedy, EOS ignored";
  settings["itl"] = "client-side, between deltas carrying tokens";
  settings["corpus"] = corpus_dir;
  report["settings"] = settings;
  report["runs"] = Json::array();
  const auto started = SteadyClock::now();
  for (const StrategyRun& strategy : *runs) {
    for (int level : *levels) {
      BenchPhase phase = RunPhase(*conn, strategy, level, rate, seed, *requests);
      for (const CallOutcome& c : phase.calls) {
        if (!c.status.ok()) {
          std::fprintf(stderr, "[kvstream] %s: %s: %s\n", strategy.label.c_str(),
                       StatusCodeName(static_cast<int>(c.status.error_code())).c_str(),
                       c.status.error_message().c_str());
          break;  // the first error of the phase tells what went wrong
        }
      }
      report["runs"].push_back(BenchPhaseJson(phase));
    }
  }
  report["wall_s"] = std::chrono::duration<double>(SteadyClock::now() - started).count();
  if (auto status = WriteReport(report, BenchTable(report["runs"])); !status.ok()) return ReportFailure(status);
  const std::string plot = absl::GetFlag(FLAGS_plot);
  if (!plot.empty()) {
    const std::string script = BenchPlotScript(report, plot);
    if (script.empty()) {
      std::fprintf(stderr, "[kvstream] --plot: nothing to draw (no request succeeded)\n");
    } else if (auto status = RunGnuplot(script); !status.ok()) {
      return ReportFailure(status);
    } else {
      std::fprintf(stderr, "[kvstream] chart written to %s\n", plot.c_str());
    }
  }
  return kExitOk;
}

}  // namespace kvstream::client
