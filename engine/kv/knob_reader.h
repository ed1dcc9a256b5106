// Typed, range-checked reads of a request's kv_compression knobs, shared by
// every strategy's config parser. Each error is INVALID_ARGUMENT naming
// kv_compression.<strategy>.<knob> and its allowed range (api.md), and a knob
// the strategy does not know is an error too, so a typo never silently falls
// back to a default.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv/strategy_config.h"

namespace kvstream {

class KnobReader {
 public:
  KnobReader(const StrategyConfig& config, std::string strategy)
      : config_(config), strategy_(std::move(strategy)) {}

  // Integer in [lo, hi]; `def` when unset.
  int64_t Int(const std::string& name, int64_t def, int64_t lo, int64_t hi);
  // Integer from a list of allowed values.
  int64_t OneOf(const std::string& name, int64_t def, std::initializer_list<int64_t> allowed);
  // Real number; each bound is open or closed as its flag says.
  double Real(const std::string& name, double def, double lo, bool lo_open, double hi, bool hi_open);
  bool Bool(const std::string& name, bool def);
  // Enum by name: accepts the proto's full value name (e.g. AKV_SCORING_STRATEGY_FIFO)
  // or the short one after `prefix` (FIFO), any case; returns the short name,
  // upper case. `unspecified` (the proto's 0 value) means `def`.
  std::string Enum(const std::string& name, const std::string& def, const std::string& prefix,
                   const std::vector<std::string>& allowed);

  // Records a cross-field error (first error wins).
  void Fail(const std::string& message);
  // The first error, or an error for a knob nobody read.
  absl::Status Finish() const;

  std::string Field(const std::string& name) const { return "kv_compression." + strategy_ + "." + name; }

 private:
  const KnobValue* Find(const std::string& name);

  const StrategyConfig& config_;
  std::string strategy_;
  std::set<std::string> read_;
  absl::Status status_;
};

}  // namespace kvstream
