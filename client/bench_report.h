// Aggregates of `kvstream bench`: one phase = one strategy at one
// concurrency (or arrival rate); its JSON, the table and the gnuplot script.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/server_calls.h"
#include "nlohmann/json.hpp"

namespace kvstream::client {

struct BenchPhase {
  std::string label;       // strategy label ("dense", "akv#2")
  std::string strategy;    // proto strategy name
  std::string description; // label with its knobs
  int concurrency = 1;     // closed loop: workers; open loop: in-flight cap (0 = none)
  double request_rate = 0; // 0 = closed loop
  double wall_s = 0;       // first request issued -> last one done
  std::vector<CallOutcome> calls;
};

// Latency percentiles (TTFT, ITL, end-to-end; client-side), throughput,
// cache reports and errors by code of one phase.
nlohmann::ordered_json BenchPhaseJson(const BenchPhase& phase);

// One row per phase, from the report's "runs".
std::string BenchTable(const nlohmann::ordered_json& runs);

// 2x2 panels against concurrency, one line per strategy: output tok/s,
// TTFT, ITL and end-to-end latency (p50 solid, p99 dashed). Empty when no
// phase had a successful request.
std::string BenchPlotScript(const nlohmann::ordered_json& report, const std::string& png_path);

}  // namespace kvstream::client
