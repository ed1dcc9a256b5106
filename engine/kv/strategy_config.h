// The engine-side form of a request's `kv_compression` choice: the strategy
// name and the knobs that were set. Unset knobs are absent, so each strategy
// applies the default of its spec (shared/design/strategies/<name>.md). The
// server fills this from the proto; the CLI from `--kv=name=value,...`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>

#include "absl/status/statusor.h"

namespace kvstream {

using KnobValue = std::variant<int64_t, double, bool, std::string>;

struct StrategyConfig {
  std::string strategy = "dense";         // "dense", "akv", "entmax_kv", ...
  std::map<std::string, KnobValue> knobs; // knob name (as in the spec table) -> value
  // Set by the engine before Open: prompt + max new tokens, the most the
  // sequence can hold (0 = unknown). Lets caches size buffers without
  // over-allocating past what admission reserved.
  int64_t max_tokens = 0;

  bool Has(const std::string& knob) const { return knobs.count(knob) != 0; }
};

// Parses "name=value,name=value" (the CLI's --kv flag). Values that parse as
// integers become int64, as floats double, true/false bool, else string.
absl::StatusOr<std::map<std::string, KnobValue>> ParseKnobList(const std::string& text);

}  // namespace kvstream
