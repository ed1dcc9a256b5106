#include "client/eval_report.h"

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/commands.h"
#include "client/latency_stats.h"
#include "client/output.h"

namespace kvstream::client {
namespace {

using Json = nlohmann::ordered_json;

// What the answered requests' cache reports held at their end: KV bytes
// (device + host) and token slots, beside the tokens they saw. Eviction and
// windowed strategies hold fewer tokens than they saw; the mean over a
// context or a passkey cell is what their accuracy was bought with.
struct Held {
  int64_t n = 0;
  double bytes = 0, tokens_held = 0, tokens_seen = 0;
  void Add(const std::optional<kvstream::v1::CacheReport>& c) {
    if (!c) return;
    ++n;
    bytes += static_cast<double>(c->kv_bytes_device() + c->kv_bytes_host());
    tokens_held += static_cast<double>(c->tokens_held());
    tokens_seen += static_cast<double>(c->tokens_seen());
  }
  void Fill(Json& j) const {
    const double d = static_cast<double>(n);
    j["kv_bytes_held_mean"] = n > 0 ? Json(bytes / d) : Json(nullptr);
    j["tokens_held_mean"] = n > 0 ? Json(tokens_held / d) : Json(nullptr);
    j["tokens_seen_mean"] = n > 0 ? Json(tokens_seen / d) : Json(nullptr);
    j["tokens_held_fraction"] = tokens_seen > 0 ? Json(tokens_held / tokens_seen) : Json(nullptr);
  }
};

struct Tally {
  int64_t samples = 0;  // answered (OK)
  int64_t correct = 0;
  std::map<std::string, int64_t> errors;
  Held held;
  Json ToJson() const {
    Json j;
    j["samples"] = samples;
    j["correct"] = correct;
    j["accuracy"] = samples > 0 ? Json(static_cast<double>(correct) / static_cast<double>(samples)) : Json(nullptr);
    j["errors"] = errors;
    held.Fill(j);
    return j;
  }
};

double NllSum(const std::vector<float>& logprobs) {
  double s = 0;
  for (float lp : logprobs) s -= lp;
  return s;
}

Json RetrievalJson(const EvalResults& r, size_t run, EvalTask task) {
  std::map<int32_t, Tally> by_context;
  std::map<std::pair<int32_t, int32_t>, Tally> by_cell;
  Tally all;
  for (size_t c = 0; c < r.cases->size(); ++c) {
    const EvalCase& ec = (*r.cases)[c];
    if (ec.task != task) continue;
    const EvalOutcome& o = r.outcomes[run][c];
    for (Tally* t : {&all, &by_context[ec.context], &by_cell[{ec.context, ec.depth}]}) {
      if (o.code != 0) {
        ++t->errors[StatusCodeName(o.code)];
        continue;
      }
      ++t->samples;
      if (AnswerMatches(o.text, ec.answer)) ++t->correct;
      t->held.Add(o.cache);
    }
  }
  Json j = all.ToJson();
  j["by_context"] = Json::array();
  for (const auto& [context, t] : by_context) {
    Json e;
    e["context"] = context;
    e.update(t.ToJson());
    j["by_context"].push_back(e);
  }
  if (task == EvalTask::kPasskey) {
    j["cells"] = Json::array();
    for (const auto& [key, t] : by_cell) {
      Json e;
      e["context"] = key.first;
      e["depth"] = key.second;
      e.update(t.ToJson());
      j["cells"].push_back(e);
    }
  }
  return j;
}

Json PplJson(const EvalResults& r, size_t run) {
  struct Acc {
    int64_t documents = 0, tokens = 0;
    double nll = 0, ref_nll = 0;
    int64_t ref_tokens = 0;
    double ratio_sum = 0;  // KV compression ratio of the documents (their cache reports)
    int64_t ratio_n = 0;
    Held held;
  };
  std::map<int32_t, Acc> by_context;
  Acc all;
  for (size_t c = 0; c < r.cases->size(); ++c) {
    const EvalCase& ec = (*r.cases)[c];
    if (ec.task != EvalTask::kPpl) continue;
    const EvalOutcome& o = r.outcomes[run][c];
    const EvalOutcome& ref = r.outcomes[r.reference][c];
    if (o.code != 0 || o.logprobs.empty()) continue;
    for (Acc* a : {&all, &by_context[ec.context]}) {
      ++a->documents;
      a->tokens += static_cast<int64_t>(o.logprobs.size());
      a->nll += NllSum(o.logprobs);
      if (o.cache) {
        a->ratio_sum += o.cache->compression_ratio();
        ++a->ratio_n;
      }
      a->held.Add(o.cache);
      // The ratio compares the same documents: only those dense scored too.
      if (ref.code == 0 && ref.logprobs.size() == o.logprobs.size()) {
        a->ref_nll += NllSum(ref.logprobs) - NllSum(o.logprobs);
        a->ref_tokens += static_cast<int64_t>(o.logprobs.size());
      }
    }
  }
  auto fill = [](Json& j, const Acc& a) {
    j["documents"] = a.documents;
    j["tokens"] = a.tokens;
    const bool any = a.tokens > 0;
    j["nll_mean"] = any ? Json(a.nll / static_cast<double>(a.tokens)) : Json(nullptr);
    j["ppl"] = any ? Json(std::exp(a.nll / static_cast<double>(a.tokens))) : Json(nullptr);
    // ppl / ppl_dense = exp(mean NLL - mean NLL of dense) on the shared documents;
    // ref_nll holds sum(NLL_dense - NLL_this) there.
    j["ppl_ratio_vs_dense"] =
        a.ref_tokens > 0 ? Json(std::exp(-a.ref_nll / static_cast<double>(a.ref_tokens))) : Json(nullptr);
    j["compression_ratio"] = a.ratio_n > 0 ? Json(a.ratio_sum / static_cast<double>(a.ratio_n)) : Json(nullptr);
    a.held.Fill(j);
  };
  Json j;
  fill(j, all);
  j["by_context"] = Json::array();
  for (const auto& [context, a] : by_context) {
    Json e;
    e["context"] = context;
    fill(e, a);
    j["by_context"].push_back(e);
  }
  return j;
}

Json AgreementJson(const EvalResults& r, size_t run) {
  struct Acc {
    int64_t prompts = 0, identical = 0, prefix_sum = 0;
  };
  std::map<int32_t, Acc> by_context;
  Acc all;
  for (size_t c = 0; c < r.cases->size(); ++c) {
    const EvalCase& ec = (*r.cases)[c];
    if (ec.task != EvalTask::kAgreement) continue;
    const EvalOutcome& o = r.outcomes[run][c];
    const EvalOutcome& ref = r.outcomes[r.reference][c];
    if (o.code != 0 || ref.code != 0) continue;
    const int32_t prefix = AgreeingPrefix(ref.tokens, o.tokens);
    const bool identical = o.tokens == ref.tokens;
    for (Acc* a : {&all, &by_context[ec.context]}) {
      ++a->prompts;
      a->identical += identical ? 1 : 0;
      a->prefix_sum += prefix;
    }
  }
  const int32_t compared = r.settings->agreement_tokens;
  auto fill = [compared](Json& j, const Acc& a) {
    j["prompts"] = a.prompts;
    j["tokens_compared"] = compared;
    j["fully_identical_pct"] =
        a.prompts > 0 ? Json(100.0 * static_cast<double>(a.identical) / static_cast<double>(a.prompts)) : Json(nullptr);
    j["mean_agreeing_prefix"] =
        a.prompts > 0 ? Json(static_cast<double>(a.prefix_sum) / static_cast<double>(a.prompts)) : Json(nullptr);
  };
  Json j;
  fill(j, all);
  j["by_context"] = Json::array();
  for (const auto& [context, a] : by_context) {
    Json e;
    e["context"] = context;
    fill(e, a);
    j["by_context"].push_back(e);
  }
  return j;
}

Json CacheJson(const EvalResults& r, size_t run) {
  std::vector<double> bytes, ratio;
  int64_t peak = 0;
  for (const EvalOutcome& o : r.outcomes[run]) {
    if (o.code != 0 || !o.cache) continue;
    bytes.push_back(static_cast<double>(o.cache->kv_bytes_device() + o.cache->kv_bytes_host()));
    ratio.push_back(o.cache->compression_ratio());
    peak = std::max<int64_t>(peak, o.cache->peak_kv_bytes());
  }
  Json j;
  j["kv_bytes_held"] = SummaryJson(Summarize(bytes));
  j["compression_ratio"] = SummaryJson(Summarize(ratio));
  j["peak_kv_bytes_max"] = peak;
  return j;
}

std::string Cell(const Json& v, const char* format, double scale = 1) {
  if (!v.is_number()) return "-";
  return absl::StrFormat(format, v.get<double>() * scale);
}

}  // namespace

Json EvalStrategiesJson(const EvalResults& r) {
  Json out = Json::array();
  for (size_t run = 0; run < r.runs->size(); ++run) {
    const StrategyRun& sr = (*r.runs)[run];
    Json j;
    j["label"] = sr.label;
    j["strategy"] = sr.name;
    j["description"] = DescribeStrategy(sr);
    auto kv = ToJson(sr.kv);
    j["kv_compression"] = kv.ok() ? Json::parse(*kv) : Json(nullptr);
    j["reference"] = run == r.reference;
    std::map<std::string, int64_t> errors;
    int64_t ok = 0;
    for (const EvalOutcome& o : r.outcomes[run]) {
      if (o.code == 0) {
        ++ok;
      } else {
        ++errors[StatusCodeName(o.code)];
      }
    }
    j["requests"] = r.outcomes[run].size();
    j["ok"] = ok;
    j["errors"] = errors;
    j["cache"] = CacheJson(r, run);
    for (EvalTask task : r.settings->tasks) {
      switch (task) {
        case EvalTask::kPasskey:
        case EvalTask::kNeedle:
          j[std::string(TaskName(task))] = RetrievalJson(r, run, task);
          break;
        case EvalTask::kPpl:
          j["ppl"] = PplJson(r, run);
          break;
        case EvalTask::kAgreement:
          j["agreement"] = AgreementJson(r, run);
          break;
      }
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::string EvalTable(const Json& strategies) {
  std::string out = absl::StrFormat("%-16s %8s %8s %9s %9s %8s %8s %8s %10s %s\n", "strategy", "passkey", "needle",
                                    "ppl", "ppl/dense", "agree%", "prefix", "ratio", "kv held", "errors");
  for (const Json& s : strategies) {
    const Json none;
    const Json& pk = s.contains("passkey") ? s["passkey"] : none;
    const Json& nd = s.contains("needle") ? s["needle"] : none;
    const Json& pp = s.contains("ppl") ? s["ppl"] : none;
    const Json& ag = s.contains("agreement") ? s["agreement"] : none;
    auto get = [](const Json& obj, const char* key) { return obj.is_object() ? obj[key] : Json(); };
    std::string errors;
    for (const auto& [code, n] : s["errors"].items()) absl::StrAppend(&errors, errors.empty() ? "" : " ", code, "=", n.dump());
    const Json& bytes = s["cache"]["kv_bytes_held"]["mean"];
    absl::StrAppend(
        &out, absl::StrFormat("%-16s %8s %8s %9s %9s %8s %8s %8s %10s %s\n", s["label"].get<std::string>(),
                              Cell(get(pk, "accuracy"), "%.1f%%", 100), Cell(get(nd, "accuracy"), "%.1f%%", 100),
                              Cell(get(pp, "ppl"), "%.3f"), Cell(get(pp, "ppl_ratio_vs_dense"), "%.3f"),
                              Cell(get(ag, "fully_identical_pct"), "%.1f%%"), Cell(get(ag, "mean_agreeing_prefix"), "%.1f"),
                              Cell(s["cache"]["compression_ratio"]["mean"], "%.2fx"),
                              bytes.is_number() ? FormatBytes(static_cast<int64_t>(bytes.get<double>())) : "-",
                              errors.empty() ? "0" : errors));
  }
  // Per context, per strategy: the same columns.
  for (const Json& s : strategies) {
    std::map<int, std::map<std::string, Json>> rows;  // context -> column -> value
    for (const char* task : {"passkey", "needle", "ppl", "agreement"}) {
      if (!s.contains(task)) continue;
      for (const Json& e : s[task]["by_context"]) {
        auto& row = rows[e["context"].get<int>()];
        for (const auto& [key, value] : e.items()) row[absl::StrCat(task, ".", key)] = value;
      }
    }
    if (rows.size() < 2) continue;
    absl::StrAppend(&out, "\nby context, ", s["label"].get<std::string>(), "\n",
                    absl::StrFormat("%8s %8s %8s %9s %9s %8s %8s %9s %10s %7s\n", "context", "passkey", "needle",
                                    "ppl", "ppl/dense", "agree%", "prefix", "kv ratio", "kv held", "held%"));
    for (auto& [context, row] : rows) {
      // KV held and the share of token slots kept: the ppl documents where
      // there are any (they fill the context), else the passkey prompts.
      const bool ppl = row.count("ppl.kv_bytes_held_mean") && !row["ppl.kv_bytes_held_mean"].is_null();
      const Json& bytes = row[ppl ? "ppl.kv_bytes_held_mean" : "passkey.kv_bytes_held_mean"];
      const Json& frac = row[ppl ? "ppl.tokens_held_fraction" : "passkey.tokens_held_fraction"];
      const std::string held = bytes.is_number() ? absl::StrFormat("%.2f MiB", bytes.get<double>() / 1048576.0) : "-";
      absl::StrAppend(&out, absl::StrFormat("%8d %8s %8s %9s %9s %8s %8s %9s %10s %7s\n", context,
                                            Cell(row["passkey.accuracy"], "%.1f%%", 100),
                                            Cell(row["needle.accuracy"], "%.1f%%", 100), Cell(row["ppl.ppl"], "%.3f"),
                                            Cell(row["ppl.ppl_ratio_vs_dense"], "%.3f"),
                                            Cell(row["agreement.fully_identical_pct"], "%.1f%%"),
                                            Cell(row["agreement.mean_agreeing_prefix"], "%.1f"),
                                            Cell(row["ppl.compression_ratio"], "%.2fx"), held,
                                            Cell(frac, "%.1f%%", 100)));
    }
  }
  // Passkey accuracy grid per strategy: contexts down, depths across.
  for (const Json& s : strategies) {
    if (!s.contains("passkey")) continue;
    std::set<int> depths, contexts;
    std::map<std::pair<int, int>, Json> acc;
    for (const Json& c : s["passkey"]["cells"]) {
      depths.insert(c["depth"].get<int>());
      contexts.insert(c["context"].get<int>());
      acc[{c["context"].get<int>(), c["depth"].get<int>()}] = c["accuracy"];
    }
    absl::StrAppend(&out, "\npasskey accuracy, ", s["label"].get<std::string>(), " (rows: context, columns: depth %)\n",
                    absl::StrFormat("%8s", "context"));
    for (int d : depths) absl::StrAppend(&out, absl::StrFormat(" %6d", d));
    absl::StrAppend(&out, "\n");
    for (int c : contexts) {
      absl::StrAppend(&out, absl::StrFormat("%8d", c));
      for (int d : depths) absl::StrAppend(&out, absl::StrFormat(" %6s", Cell(acc[{c, d}], "%.0f%%", 100)));
      absl::StrAppend(&out, "\n");
    }
  }
  return out;
}

}  // namespace kvstream::client
