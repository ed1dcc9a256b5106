#include "client/bench_report.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/commands.h"
#include "client/gnuplot_pipe.h"
#include "client/latency_stats.h"
#include "client/output.h"

namespace kvstream::client {
namespace {

using Json = nlohmann::ordered_json;

std::string Ms(const Json& v) { return v.is_number() ? absl::StrFormat("%.1f", v.get<double>()) : "-"; }

}  // namespace

Json BenchPhaseJson(const BenchPhase& p) {
  std::vector<double> ttft, itl, e2e, prompt, completion, kv_bytes, ratio, queue, server_ttft;
  std::map<std::string, int64_t> errors;
  int64_t ok = 0, out_tokens = 0, peak = 0;
  for (const CallOutcome& c : p.calls) {
    if (!c.status.ok()) {
      ++errors[StatusCodeName(static_cast<int>(c.status.error_code()))];
      continue;
    }
    ++ok;
    if (c.ttft_ms >= 0) ttft.push_back(c.ttft_ms);
    itl.insert(itl.end(), c.itl_ms.begin(), c.itl_ms.end());
    e2e.push_back(c.e2e_ms);
    const auto& r = *c.result;
    prompt.push_back(r.usage().prompt_tokens());
    completion.push_back(r.usage().completion_tokens());
    out_tokens += r.usage().completion_tokens();
    kv_bytes.push_back(static_cast<double>(r.cache().kv_bytes_device() + r.cache().kv_bytes_host()));
    ratio.push_back(r.cache().compression_ratio());
    peak = std::max<int64_t>(peak, r.cache().peak_kv_bytes());
    queue.push_back(r.timings().queue_ms());
    server_ttft.push_back(r.timings().ttft_ms());
  }
  Json j;
  j["strategy"] = p.label;
  j["strategy_name"] = p.strategy;
  j["description"] = p.description;
  j["concurrency"] = p.concurrency;
  j["request_rate"] = p.request_rate;
  j["mode"] = p.request_rate > 0 ? "poisson" : "closed";
  j["requests"] = p.calls.size();
  j["ok"] = ok;
  j["errors"] = errors;
  j["wall_s"] = p.wall_s;
  j["ttft_ms"] = SummaryJson(Summarize(ttft));
  j["itl_ms"] = SummaryJson(Summarize(itl));
  j["e2e_ms"] = SummaryJson(Summarize(e2e));
  j["output_tokens"] = out_tokens;
  j["output_tok_s"] = p.wall_s > 0 ? Json(static_cast<double>(out_tokens) / p.wall_s) : Json(nullptr);
  j["requests_s"] = p.wall_s > 0 ? Json(static_cast<double>(ok) / p.wall_s) : Json(nullptr);
  j["prompt_tokens"] = SummaryJson(Summarize(prompt));
  j["completion_tokens"] = SummaryJson(Summarize(completion));
  j["kv_bytes_held"] = SummaryJson(Summarize(kv_bytes));
  j["peak_kv_bytes_max"] = peak;
  j["compression_ratio"] = SummaryJson(Summarize(ratio));
  j["server_queue_ms"] = SummaryJson(Summarize(queue));
  j["server_ttft_ms"] = SummaryJson(Summarize(server_ttft));
  return j;
}

std::string BenchTable(const Json& runs) {
  std::string out = absl::StrFormat(
      "%-12s %5s %6s %7s | %-23s | %-23s | %-17s | %8s %6s | %10s %7s | %s\n", "strategy", "conc", "rate", "ok/req",
      "TTFT ms p50/p90/p99", "ITL ms p50/p90/p99", "E2E ms p50/p99", "tok/s", "req/s", "kv held", "ratio", "errors");
  for (const Json& r : runs) {
    std::string errors;
    for (const auto& [code, n] : r["errors"].items()) absl::StrAppend(&errors, errors.empty() ? "" : " ", code, "=", n.dump());
    const Json& kv = r["kv_bytes_held"]["mean"];
    absl::StrAppend(
        &out,
        absl::StrFormat("%-12s %5d %6s %7s | %-23s | %-23s | %-17s | %8s %6s | %10s %7s | %s\n",
                        r["strategy"].get<std::string>(), r["concurrency"].get<int>(),
                        r["request_rate"].get<double>() > 0 ? absl::StrFormat("%.2f", r["request_rate"].get<double>())
                                                            : "closed",
                        absl::StrCat(r["ok"].get<int64_t>(), "/", r["requests"].get<int64_t>()),
                        absl::StrCat(Ms(r["ttft_ms"]["p50"]), "/", Ms(r["ttft_ms"]["p90"]), "/", Ms(r["ttft_ms"]["p99"])),
                        absl::StrCat(Ms(r["itl_ms"]["p50"]), "/", Ms(r["itl_ms"]["p90"]), "/", Ms(r["itl_ms"]["p99"])),
                        absl::StrCat(Ms(r["e2e_ms"]["p50"]), "/", Ms(r["e2e_ms"]["p99"])), Ms(r["output_tok_s"]),
                        r["requests_s"].is_number() ? absl::StrFormat("%.2f", r["requests_s"].get<double>()) : "-",
                        kv.is_number() ? FormatBytes(static_cast<int64_t>(kv.get<double>())) : "-",
                        r["compression_ratio"]["mean"].is_number()
                            ? absl::StrFormat("%.2fx", r["compression_ratio"]["mean"].get<double>())
                            : "-",
                        errors.empty() ? "0" : errors));
  }
  return out;
}

std::string BenchPlotScript(const Json& report, const std::string& png_path) {
  // One data block per strategy: concurrency, tok/s, then p50 and p99 of TTFT, ITL, E2E.
  std::map<std::string, std::vector<std::string>> rows;
  std::vector<std::string> order;
  for (const Json& r : report["runs"]) {
    // A phase where every request failed has nothing to draw.
    if (r["ok"].get<int64_t>() == 0) continue;
    const std::string label = r["strategy"].get<std::string>();
    if (!rows.count(label)) order.push_back(label);
    auto v = [](const Json& x) { return x.is_number() ? absl::StrFormat("%.4f", x.get<double>()) : std::string("NaN"); };
    rows[label].push_back(absl::StrJoin({absl::StrCat(r["concurrency"].get<int>()), v(r["output_tok_s"]),
                                         v(r["ttft_ms"]["p50"]), v(r["ttft_ms"]["p99"]), v(r["itl_ms"]["p50"]),
                                         v(r["itl_ms"]["p99"]), v(r["e2e_ms"]["p50"]), v(r["e2e_ms"]["p99"])},
                                        " "));
  }
  if (order.empty()) return "";
  const std::string rate = report["settings"]["request_rate"].get<double>() > 0
                               ? absl::StrFormat("Poisson %.2f req/s", report["settings"]["request_rate"].get<double>())
                               : "closed loop";
  std::string script = absl::StrFormat(
      "set terminal pngcairo noenhanced size 1100,800 font 'sans,10'\nset output %s\nset datafile missing 'NaN'\n"
      "set logscale x 2\nset grid\nset key top left\nset xlabel 'concurrency'\n"
      "set multiplot layout 2,2 title %s\n",
      GnuplotQuote(png_path),
      GnuplotQuote(absl::StrCat("kvstream bench, ", report["model"].value("name", "model"), ", ", rate,
                                ", prompt ", report["settings"]["prompt_len"].get<std::string>(), ", gen ",
                                report["settings"]["gen_len"].get<std::string>())));
  for (size_t i = 0; i < order.size(); ++i) absl::StrAppend(&script, DataBlock(absl::StrCat("s", i), rows[order[i]]));
  struct Panel {
    const char* title;
    const char* ylabel;
    int p50, p99;  // columns (p99 = 0: none)
  };
  const Panel panels[] = {{"output throughput", "tokens/s", 2, 0},
                          {"time to first token", "ms", 3, 4},
                          {"inter-token latency (client)", "ms", 5, 6},
                          {"end-to-end latency", "ms", 7, 8}};
  for (const Panel& panel : panels) {
    absl::StrAppend(&script, "set title '", panel.title, "'\nset ylabel '", panel.ylabel, "'\nplot ");
    std::vector<std::string> parts;
    for (size_t i = 0; i < order.size(); ++i) {
      const std::string lt = absl::StrCat("lc ", i + 1);
      const std::string suffix = panel.p99 ? " p50" : "";
      parts.push_back(absl::StrFormat("$s%d using 1:%d with linespoints lw 2 pt 7 %s title %s", i, panel.p50, lt,
                                      GnuplotQuote(order[i] + suffix)));
      if (panel.p99) {
        parts.push_back(absl::StrFormat("$s%d using 1:%d with linespoints lw 2 dt 2 pt 6 %s title %s", i, panel.p99,
                                        lt, GnuplotQuote(order[i] + " p99")));
      }
    }
    absl::StrAppend(&script, absl::StrJoin(parts, ", \\\n     "), "\n");
  }
  absl::StrAppend(&script, "unset multiplot\n");
  return script;
}

}  // namespace kvstream::client
