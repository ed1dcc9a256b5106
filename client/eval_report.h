// Scores and reports of `kvstream eval`: the JSON report (the source of
// truth), the table printed from it, and the gnuplot script of the passkey
// heat-map.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "client/eval_plan.h"
#include "client/strategy_set.h"
#include "nlohmann/json.hpp"

namespace kvstream::client {

// What one case gave under one strategy.
struct EvalOutcome {
  int code = 0;  // grpc status code; 0 = OK
  std::string error;
  std::string text;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::optional<kvstream::v1::CacheReport> cache;
};

struct EvalResults {
  const EvalSettings* settings = nullptr;
  const std::vector<StrategyRun>* runs = nullptr;
  const std::vector<EvalCase>* cases = nullptr;
  std::vector<std::vector<EvalOutcome>> outcomes;  // [run][case]
  size_t reference = 0;                            // index in runs of the dense reference
};

// One entry per strategy: errors by code, cache summary, and one object per
// task that ran (see the README section "kvstream eval" for the fields).
nlohmann::ordered_json EvalStrategiesJson(const EvalResults& results);

// The summary table and the passkey grids, from the report's "strategies".
std::string EvalTable(const nlohmann::ordered_json& strategies);

// gnuplot script: one passkey heat-map (depth x context, accuracy) per
// strategy. Empty when passkey did not run.
std::string EvalPlotScript(const nlohmann::ordered_json& report, const std::string& png_path);

}  // namespace kvstream::client
