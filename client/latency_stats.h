// Percentile summaries of latencies and sizes for the bench and eval reports.
#pragma once

#include <optional>
#include <vector>

#include "nlohmann/json.hpp"

namespace kvstream::client {

struct Summary {
  int64_t count = 0;
  // Unset when count == 0 (printed as "-" and JSON null).
  std::optional<double> mean, p50, p90, p99, min, max;
};

// Percentiles by linear interpolation between closest ranks (numpy's
// default): p50 of {1,2,3,4} is 2.5. Order of `values` does not matter.
Summary Summarize(std::vector<double> values);

// q in [0, 100] of sorted, non-empty values.
double PercentileOfSorted(const std::vector<double>& sorted, double q);

// {"count":n,"mean":..,"p50":..,"p90":..,"p99":..,"min":..,"max":..}; null
// for unset values.
nlohmann::ordered_json SummaryJson(const Summary& s);

// A value or JSON null.
nlohmann::ordered_json OrNull(const std::optional<double>& v);

}  // namespace kvstream::client
