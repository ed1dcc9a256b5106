// The strategies one bench or eval run compares (--strategies), each with
// its KvCompression filled from --kv.
//
// --kv items are name=value (applied to every listed strategy whose config
// has that knob; an error if none has it), strategy.name=value (that
// strategy only) or label.name=value (one run: akv#2.warm_bits=2). A strategy listed twice is run twice, labelled "akv",
// "akv#2": `--strategies=dense,dense` measures run-to-run noise.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kvstream/v1/kvstream.pb.h"

namespace kvstream::client {

struct StrategyRun {
  std::string label;  // unique in the run: "dense", "akv", "akv#2"
  std::string name;   // KvCompression oneof field: "dense", "akv", ...
  kvstream::v1::KvCompression kv;
};

// InvalidArgument naming the unknown strategy or knob (and the valid ones).
absl::StatusOr<std::vector<StrategyRun>> ParseStrategies(absl::string_view list,
                                                         const std::vector<std::string>& kv_lists);

// "akv: hot_budget=512 warm_bits=4" (the knobs that were set), "dense" alone.
std::string DescribeStrategy(const StrategyRun& run);

}  // namespace kvstream::client
