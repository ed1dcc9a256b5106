#include "client/args.h"

#include <algorithm>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace kvstream::client {
namespace {

bool IsHelp(absl::string_view name) { return name == "help" || name == "helpfull" || name == "helpshort"; }

// Records one value of `flag` after absl accepted it.
absl::Status SetFlag(absl::CommandLineFlag& flag, const std::string& name, const std::string& value, ParsedArgs& out) {
  std::string error;
  if (!flag.ParseFrom(value, &error)) {
    return absl::InvalidArgumentError(absl::StrCat("bad value '", value, "' for ", DashName(name), ": ", error));
  }
  auto [it, inserted] = out.values.try_emplace(name);
  if (inserted) out.order.push_back(name);
  it->second.push_back(value);
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& ParsedArgs::All(absl::string_view flag) const {
  static const std::vector<std::string> kNone;
  auto it = values.find(flag);
  return it == values.end() ? kNone : it->second;
}

std::string DashName(absl::string_view flag) { return absl::StrCat("--", absl::StrReplaceAll(flag, {{"_", "-"}})); }

absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const std::string> args) {
  ParsedArgs out;
  bool flags_done = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_flag = !flags_done && arg.size() > 1 && arg[0] == '-' && arg != "-";
    if (!is_flag) {
      if (out.command.empty() && out.positionals.empty()) {
        out.command = arg;
      } else {
        out.positionals.push_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    if (arg == "-h") {
      out.help = true;
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", arg, "' (flags are written --name=value)"));
    }
    absl::string_view body = absl::string_view(arg).substr(2);
    const size_t eq = body.find('=');
    std::string name = absl::StrReplaceAll(body.substr(0, eq), {{"-", "_"}});
    const bool has_value = eq != absl::string_view::npos;
    std::string value = has_value ? std::string(body.substr(eq + 1)) : std::string();
    if (IsHelp(name)) {
      out.help = true;
      continue;
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no") && !has_value) {
      // --noignore-eos and --no-ignore-eos (dashes became "no_ignore_eos").
      std::string positive_name = name.substr(absl::StartsWith(name, "no_") ? 3 : 2);
      absl::CommandLineFlag* positive = absl::FindCommandLineFlag(positive_name);
      if (positive != nullptr && positive->IsOfType<bool>()) {
        auto status = SetFlag(*positive, positive_name, "false", out);
        if (!status.ok()) return status;
        continue;
      }
    }
    if (flag == nullptr || flag->IsRetired()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", DashName(name)));
    }
    if (!has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat(DashName(name), " needs a value"));
      }
    }
    auto status = SetFlag(*flag, name, value, out);
    if (!status.ok()) return status;
  }
  return out;
}

absl::Status CheckFlagsAllowed(const ParsedArgs& parsed, absl::string_view command,
                               absl::Span<const absl::string_view> allowed) {
  for (const std::string& name : parsed.order) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat(DashName(name), " is not a flag of `kvstream ", command,
                                                     "` (see kvstream ", command, " --help)"));
    }
  }
  return absl::OkStatus();
}

std::string FlagHelp(absl::Span<const absl::string_view> flags) {
  std::string out;
  for (absl::string_view name : flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    std::string head = DashName(name);
    if (!flag->IsOfType<bool>() || flag->DefaultValue() == "true") {
      const std::string def = flag->DefaultValue();
      absl::StrAppend(&head, "=", def.empty() ? "\"\"" : def);
    }
    absl::StrAppend(&out, "  ", head, "\n      ", flag->Help(), "\n");
  }
  return out;
}

}  // namespace kvstream::client
