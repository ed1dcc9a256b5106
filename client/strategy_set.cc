#include "client/strategy_set.h"

#include <map>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "client/knobs.h"
#include "google/protobuf/text_format.h"

namespace kvstream::client {
namespace {

using google::protobuf::Message;

Message& ConfigOf(StrategyRun& run) {
  auto field = FindStrategy(run.name);  // checked when the run was made
  return *run.kv.GetReflection()->MutableMessage(&run.kv, *field);
}

// Applies one "name=value" or "strategy.name=value" to the runs it concerns.
absl::Status ApplyItem(absl::string_view item, std::vector<StrategyRun>& runs) {
  const size_t eq = item.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--kv item '", item, "' is not name=value"));
  }
  absl::string_view name = absl::StripAsciiWhitespace(item.substr(0, eq));
  const absl::string_view value = absl::StripAsciiWhitespace(item.substr(eq + 1));
  absl::string_view only;
  if (const size_t dot = name.find('.'); dot != absl::string_view::npos) {
    only = name.substr(0, dot);
    name = name.substr(dot + 1);
  }
  int applied = 0;
  std::vector<std::string> known;
  for (StrategyRun& run : runs) {
    if (!only.empty() && run.name != only && run.label != only) continue;  // "akv" or "akv#2"
    Message& config = ConfigOf(run);
    if (config.GetDescriptor()->FindFieldByName(std::string(name)) == nullptr) {
      known.push_back(absl::StrCat(run.name, ": ", KnobNames(*config.GetDescriptor())));
      continue;
    }
    if (auto status = SetKnob(config, name, value); !status.ok()) return status;
    ++applied;
  }
  if (applied > 0) return absl::OkStatus();
  if (!only.empty() && known.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv ", item, ": strategy '", only, "' is not in --strategies"));
  }
  return absl::InvalidArgumentError(absl::StrCat("--kv ", item, ": no listed strategy has knob '", name,
                                                 "' (", absl::StrJoin(known, "; "), ")"));
}

}  // namespace

absl::StatusOr<std::vector<StrategyRun>> ParseStrategies(absl::string_view list,
                                                         const std::vector<std::string>& kv_lists) {
  std::vector<StrategyRun> runs;
  std::map<std::string, int> seen;
  for (absl::string_view raw : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    StrategyRun run;
    run.name = std::string(absl::StripAsciiWhitespace(raw));
    if (auto field = FindStrategy(run.name); !field.ok()) return field.status();
    if (auto status = ApplyStrategy(run.name, {}, run.kv); !status.ok()) return status;
    const int n = ++seen[run.name];
    run.label = n == 1 ? run.name : absl::StrCat(run.name, "#", n);
    runs.push_back(std::move(run));
  }
  if (runs.empty()) return absl::InvalidArgumentError("--strategies is empty (e.g. --strategies=dense,akv)");
  for (const std::string& kv : kv_lists) {
    for (absl::string_view item : absl::StrSplit(kv, ',', absl::SkipWhitespace())) {
      if (auto status = ApplyItem(absl::StripAsciiWhitespace(item), runs); !status.ok()) return status;
    }
  }
  return runs;
}

std::string DescribeStrategy(const StrategyRun& run) {
  auto field = FindStrategy(run.name);
  if (!field.ok()) return run.label;
  const Message& config = run.kv.GetReflection()->GetMessage(run.kv, *field);
  std::string knobs;
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(true);
  printer.PrintToString(config, &knobs);
  knobs = std::string(absl::StripAsciiWhitespace(knobs));
  absl::StrReplaceAll({{": ", "="}}, &knobs);
  return knobs.empty() ? run.label : absl::StrCat(run.label, ": ", knobs);
}

}  // namespace kvstream::client
