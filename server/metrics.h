// Prometheus text-format metrics (exposition format 0.0.4), served on
// --metrics-port at /metrics. Counters and histograms are updated from gRPC
// and engine threads; gauges are read from the scheduler when scraped.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/scheduler/scheduler.h"

namespace kvstream::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void Observe(double v);
  void Render(const std::string& name, const std::string& help, std::string* out) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  // One finished request (any status).
  void RequestEnded(const std::string& strategy, const std::string& code);
  void ObserveTtft(double ms) { ttft_ms_.Observe(ms / 1000.0); }
  void ObserveItl(double ms) { itl_ms_.Observe(ms / 1000.0); }
  // The cache report of one successful request, summed per strategy, so a
  // dashboard can chart KV bytes per request by strategy (rate of the sums
  // over rate of the OK requests).
  void ObserveCache(const std::string& strategy, int64_t kv_bytes, int64_t peak_kv_bytes, int64_t dense_bytes);
  std::string Render(const SchedulerStats& s) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;  // (strategy, code) -> count
  struct CacheSums {
    double kv_bytes = 0, peak_kv_bytes = 0, dense_bytes = 0;  // bytes, summed over requests
  };
  std::map<std::string, CacheSums> cache_;  // strategy -> sums
  Histogram ttft_ms_, itl_ms_;
};

}  // namespace kvstream::server
