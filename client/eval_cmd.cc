// kvstream eval: answer quality of each --strategies entry against dense on
// the same prompts, in one run (passkey, needle, ppl, agreement). Prompts are
// built once (client/eval_plan.h), sent once per strategy with up to
// --concurrency requests in flight (the server batches them), then scored
// (client/eval_report.h). Table on stdout; --json / --json=FILE; --plot.
#include <atomic>
#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/eval_report.h"
#include "client/flags.h"
#include "client/gnuplot_pipe.h"
#include "client/load_flags.h"
#include "client/output.h"
#include "client/progress_bar.h"
#include "client/report_output.h"
#include "client/request_pool.h"
#include "client/server_calls.h"

namespace kvstream::client {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<EvalSettings> SettingsFromFlags(int32_t model_context) {
  EvalSettings s;
  auto tasks = ParseTasks(absl::GetFlag(FLAGS_tasks));
  if (!tasks.ok()) return tasks.status();
  s.tasks = *tasks;
  // Room for the answer after the prompt.
  auto contexts = ParseIntList("contexts", absl::GetFlag(FLAGS_contexts), 64,
                               std::max(64, model_context - std::max(kAnswerTokens, absl::GetFlag(FLAGS_agreement_tokens))));
  if (!contexts.ok()) return contexts.status();
  s.contexts = *contexts;
  auto depths = ParseIntList("depths", absl::GetFlag(FLAGS_depths), 0, 100);
  if (!depths.ok()) return depths.status();
  s.depths = *depths;
  s.samples = absl::GetFlag(FLAGS_samples);
  s.seed = absl::GetFlag(FLAGS_seed);
  s.ppl_tokens = absl::GetFlag(FLAGS_ppl_tokens);
  s.agreement_tokens = absl::GetFlag(FLAGS_agreement_tokens);
  if (s.samples < 1) return absl::InvalidArgumentError("--samples must be >= 1");
  if (s.ppl_tokens < 1) return absl::InvalidArgumentError("--ppl-tokens must be >= 1");
  if (s.agreement_tokens < 1) return absl::InvalidArgumentError("--agreement-tokens must be >= 1");
  return s;
}

Json SettingsJson(const EvalSettings& s, const PromptFormat& format, int concurrency, const std::string& corpus) {
  Json j;
  std::vector<std::string> tasks;
  for (EvalTask t : s.tasks) tasks.emplace_back(TaskName(t));
  j["tasks"] = tasks;
  j["contexts"] = s.contexts;
  j["depths"] = s.depths;
  j["samples"] = s.samples;
  j["seed"] = s.seed;
  j["prompt_format"] = format.name;
  j["ppl_tokens"] = s.ppl_tokens;
  j["agreement_tokens"] = s.agreement_tokens;
  j["answer_tokens"] = kAnswerTokens;
  j["concurrency"] = concurrency;
  j["corpus"] = corpus;
  return j;
}

}  // namespace

int RunEval(const ParsedArgs& args) {
  auto runs = ParseStrategies(absl::GetFlag(FLAGS_strategies), args.All("kv"));
  if (!runs.ok()) return ReportUsageError(runs.status());
  // Eval defaults to 4 in flight (the server batches them); bench to 1.
  int concurrency = 4;
  if (args.Has("concurrency") &&
      (!absl::SimpleAtoi(absl::GetFlag(FLAGS_concurrency), &concurrency) || concurrency < 1)) {
    return ReportUsageError(absl::InvalidArgumentError("eval --concurrency takes one integer >= 1"));
  }
  auto conn = Connection::Open(ConnectionOptionsFromFlags());
  if (!conn.ok()) return ReportUsageError(conn.status());
  auto info = FetchModelInfo(*conn);
  if (!info.ok()) return ReportFailure(info.status());
  auto settings = SettingsFromFlags(info->context_length());
  if (!settings.ok()) return ReportUsageError(settings.status());
  const std::string corpus_dir = CorpusDir(absl::GetFlag(FLAGS_corpus));
  auto corpus = Corpus::Load(corpus_dir);
  if (!corpus.ok()) return ReportFailure(corpus.status());
  RemoteTokenizer tokenizer(*conn);
  auto format = ResolvePromptFormat(absl::GetFlag(FLAGS_prompt_format), tokenizer);
  if (!format.ok()) return ReportUsageError(format.status());

  // Dense is the reference of ppl and agreement: the first dense entry, or
  // one added in front when none was listed.
  size_t reference = runs->size();
  for (size_t i = 0; i < runs->size(); ++i) {
    if ((*runs)[i].name == "dense" && reference == runs->size()) reference = i;
  }
  if (reference == runs->size()) {
    auto dense = ParseStrategies("dense", {});
    runs->insert(runs->begin(), (*dense)[0]);
    reference = 0;
  }

  std::vector<EvalCase> cases;
  {
    ProgressBar bar("preparing prompts", CountEvalCases(*settings));
    auto built = BuildEvalCases(*settings, *corpus, tokenizer, *format, [&] { bar.Advance(); });
    bar.Finish();
    if (!built.ok()) return ReportFailure(built.status());
    cases = std::move(*built);
  }

  EvalResults results;
  results.settings = &*settings;
  results.runs = &*runs;
  results.cases = &cases;
  results.reference = reference;
  results.outcomes.assign(runs->size(), std::vector<EvalOutcome>(cases.size()));
  const int64_t total = static_cast<int64_t>(runs->size() * cases.size());
  const auto started = SteadyClock::now();
  {
    auto stub = kvstream::v1::Generation::NewStub(conn->channel());
    ProgressBar bar("eval", total);
    std::atomic<int64_t> errors{0};
    RunClosedLoop(concurrency, total, [&](int64_t i, SteadyClock::time_point start) {
      const size_t run = static_cast<size_t>(i) / cases.size();
      const size_t c = static_cast<size_t>(i) % cases.size();
      kvstream::v1::GenerateRequest request = cases[c].request;
      *request.mutable_kv_compression() = EvalKvFor((*runs)[run].kv, cases[c]);
      request.set_request_id(absl::StrCat(request.request_id(), "-", (*runs)[run].label));
      CallOutcome call = CallGenerate(*conn, *stub, request, start);
      EvalOutcome& o = results.outcomes[run][c];
      o.code = static_cast<int>(call.status.error_code());
      o.error = call.status.error_message();
      o.text = std::move(call.text);
      o.tokens = std::move(call.token_ids);
      o.logprobs = std::move(call.logprobs);
      if (call.result) o.cache = call.result->cache();
      if (o.code != 0) ++errors;
      bar.Advance(absl::StrCat((*runs)[run].label, " ", TaskName(cases[c].task), " ", cases[c].context,
                               errors > 0 ? absl::StrCat(", ", errors.load(), " errors") : ""));
    });
  }
  const double wall_s = std::chrono::duration<double>(SteadyClock::now() - started).count();

  Json report;
  report["kind"] = "kvstream-eval";
  report["command"] = CommandLineOf(args, "eval");
  report["target"] = absl::GetFlag(FLAGS_target);
  report["model"] = ModelJson(*info);
  report["settings"] = SettingsJson(*settings, *format, concurrency, corpus_dir);
  report["reference"] = (*runs)[reference].label;
  report["wall_s"] = wall_s;
  report["strategies"] = EvalStrategiesJson(results);
  // The first error message of each strategy, to tell UNIMPLEMENTED from a bad knob.
  for (size_t run = 0; run < runs->size(); ++run) {
    std::string first;
    for (const EvalOutcome& o : results.outcomes[run]) {
      if (o.code != 0) {
        first = absl::StrCat(StatusCodeName(o.code), ": ", o.error);
        break;
      }
    }
    report["strategies"][run]["first_error"] = first.empty() ? Json(nullptr) : Json(first);
    if (!first.empty()) std::fprintf(stderr, "[kvstream] %s: %s\n", (*runs)[run].label.c_str(), first.c_str());
  }
  const std::string table = absl::StrCat(EvalTable(report["strategies"]),
                                          absl::StrFormat("\n%d requests in %.1f s\n", total, wall_s));
  if (auto status = WriteReport(report, table); !status.ok()) return ReportFailure(status);
  const std::string plot = absl::GetFlag(FLAGS_plot);
  if (!plot.empty()) {
    const std::string script = EvalPlotScript(report, plot);
    if (script.empty()) {
      std::fprintf(stderr, "[kvstream] --plot: nothing to draw (the heat-map needs the passkey task)\n");
    } else if (auto status = RunGnuplot(script); !status.ok()) {
      return ReportFailure(status);
    } else {
      std::fprintf(stderr, "[kvstream] heat-map written to %s\n", plot.c_str());
    }
  }
  return kExitOk;
}

namespace {

// The fields EvalTable and EvalPlotScript read: a hand-edited or truncated
// report is an error naming the field, never a crash (nlohmann's const
// operator[] does not check that a key exists).
absl::Status CheckReportShape(const Json& report) {
  auto bad = [](const std::string& where, const char* what) {
    return absl::InvalidArgumentError(absl::StrCat(where, " must be ", what));
  };
  auto number_or_null = [](const Json& o, const char* k) { return o.contains(k) && (o[k].is_number() || o[k].is_null()); };
  if (report.contains("model") && !report["model"].is_object()) return bad("model", "an object");
  const Json& strategies = report["strategies"];
  for (size_t i = 0; i < strategies.size(); ++i) {
    const Json& s = strategies[i];
    const std::string at = absl::StrCat("strategies[", i, "]");
    if (!s.is_object()) return bad(at, "an object");
    if (!s.contains("label") || !s["label"].is_string()) return bad(at + ".label", "a string");
    if (!s.contains("description") || !s["description"].is_string()) return bad(at + ".description", "a string");
    if (!s.contains("errors") || !s["errors"].is_object()) return bad(at + ".errors", "an object");
    if (!s.contains("cache") || !s["cache"].is_object()) return bad(at + ".cache", "an object");
    for (const char* k : {"kv_bytes_held", "compression_ratio"}) {
      if (!s["cache"].contains(k) || !s["cache"][k].is_object() || !number_or_null(s["cache"][k], "mean")) {
        return bad(absl::StrCat(at, ".cache.", k, ".mean"), "a number or null");
      }
    }
    const std::pair<const char*, std::vector<const char*>> tasks[] = {
        {"passkey", {"accuracy"}}, {"needle", {"accuracy"}}, {"ppl", {"ppl", "ppl_ratio_vs_dense"}},
        {"agreement", {"fully_identical_pct", "mean_agreeing_prefix"}}};
    for (const auto& [task, keys] : tasks) {
      if (!s.contains(task)) continue;
      const Json& t = s[task];
      const std::string tat = absl::StrCat(at, ".", task);
      if (!t.is_object()) return bad(tat, "an object");
      for (const char* k : keys) {
        if (!number_or_null(t, k)) return bad(absl::StrCat(tat, ".", k), "a number or null");
      }
      if (!t.contains("by_context") || !t["by_context"].is_array()) return bad(tat + ".by_context", "an array");
      for (const Json& e : t["by_context"]) {
        if (!e.is_object() || !e.contains("context") || !e["context"].is_number_integer()) {
          return bad(tat + ".by_context[].context", "an integer");
        }
      }
      if (std::string(task) != "passkey") continue;
      if (!t.contains("cells") || !t["cells"].is_array()) return bad(tat + ".cells", "an array");
      for (const Json& c : t["cells"]) {
        if (!c.is_object() || !c.contains("context") || !c["context"].is_number_integer() || !c.contains("depth") ||
            !c["depth"].is_number_integer() || !number_or_null(c, "accuracy")) {
          return bad(tat + ".cells[]", "objects with integer context and depth and a numeric accuracy");
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

int RunRender(const ParsedArgs&) {
  const std::string path = absl::GetFlag(FLAGS_report);
  if (path.empty()) return ReportFailure(absl::InvalidArgumentError("render needs --report=FILE (a kvstream eval JSON)"));
  std::ifstream in(path);
  if (!in) return ReportFailure(absl::NotFoundError(absl::StrCat("--report: cannot open ", path)));
  Json report = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (report.is_discarded() || !report.is_object() || report.value("kind", "") != "kvstream-eval" ||
      !report.contains("strategies") || !report["strategies"].is_array()) {
    return ReportFailure(absl::InvalidArgumentError(absl::StrCat("--report: ", path, " is not a kvstream eval report")));
  }
  if (absl::Status shape = CheckReportShape(report); !shape.ok()) {
    return ReportFailure(absl::InvalidArgumentError(absl::StrCat("--report: ", path, ": ", shape.message())));
  }
  std::string table, script;
  const std::string plot = absl::GetFlag(FLAGS_plot);
  try {
    table = EvalTable(report["strategies"]);
    if (!plot.empty()) script = EvalPlotScript(report, plot);
  } catch (const Json::exception& e) {
    return ReportFailure(absl::InvalidArgumentError(absl::StrCat("--report: ", path, ": ", e.what())));
  }
  std::fputs(table.c_str(), stdout);
  if (plot.empty()) return kExitOk;
  if (script.empty()) return ReportFailure(absl::InvalidArgumentError("--plot: the report has no passkey task"));
  if (auto status = RunGnuplot(script); !status.ok()) return ReportFailure(status);
  std::fprintf(stderr, "[kvstream] heat-map written to %s\n", plot.c_str());
  return kExitOk;
}

}  // namespace kvstream::client
