#include "client/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kvstream::client {

double PercentileOfSorted(const std::vector<double>& sorted, double q) {
  const double rank = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary Summarize(std::vector<double> values) {
  Summary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  s.p50 = PercentileOfSorted(values, 50);
  s.p90 = PercentileOfSorted(values, 90);
  s.p99 = PercentileOfSorted(values, 99);
  s.min = values.front();
  s.max = values.back();
  return s;
}

nlohmann::ordered_json OrNull(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}

nlohmann::ordered_json SummaryJson(const Summary& s) {
  nlohmann::ordered_json j;
  j["count"] = s.count;
  j["mean"] = OrNull(s.mean);
  j["p50"] = OrNull(s.p50);
  j["p90"] = OrNull(s.p90);
  j["p99"] = OrNull(s.p99);
  j["min"] = OrNull(s.min);
  j["max"] = OrNull(s.max);
  return j;
}

}  // namespace kvstream::client
