// Command-line parsing of the kvstream CLI, on top of absl flags.
//
// absl::ParseCommandLine exits 1 on a bad flag and keeps only the last value
// of a repeated flag; the CLI needs exit code 2 for usage errors, repeatable
// flags (--chat, --stop, --kv) and to know which flags were really given, so
// that unset `optional` proto fields stay unset. So this parser walks argv
// itself and sets each flag through absl's reflection (CommandLineFlag::
// ParseFrom): the flags keep absl's types, defaults and help text.
//
// Accepted forms: --name=value, --name value, --name (bool), --noname and
// --no-name (bool false),
// dashes or underscores in names (--max-new-tokens = --max_new_tokens),
// -h / --help, and "--" ending the flags. The first positional argument is
// the command; flags may come before or after it.
#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvstream::client {

struct ParsedArgs {
  std::string command;                   // first positional argument, "" if none
  std::vector<std::string> positionals;  // positional arguments after the command
  bool help = false;                     // -h, --help, --helpfull, --helpshort
  // Every value given, per flag (underscore name), in command-line order. A
  // bool flag given bare records "true", --noname records "false".
  absl::flat_hash_map<std::string, std::vector<std::string>> values;
  std::vector<std::string> order;  // flag names in the order first given

  bool Has(absl::string_view flag) const { return values.contains(flag); }
  // All values of a repeatable flag (empty if not given).
  const std::vector<std::string>& All(absl::string_view flag) const;
};

// Parses args (args[0] is the program name, skipped). Sets the absl flags it
// meets. Unknown flags, missing values and unparsable values are
// InvalidArgument naming the flag.
absl::StatusOr<ParsedArgs> ParseArgs(absl::Span<const std::string> args);

// InvalidArgument if a given flag is not in `allowed` (underscore names).
absl::Status CheckFlagsAllowed(const ParsedArgs& parsed, absl::string_view command,
                               absl::Span<const absl::string_view> allowed);

// "--max-new-tokens" for "max_new_tokens": how flags are shown to people.
std::string DashName(absl::string_view flag);

// One line per flag: "  --name=<default>  help" (from the absl registry).
std::string FlagHelp(absl::Span<const absl::string_view> flags);

}  // namespace kvstream::client
