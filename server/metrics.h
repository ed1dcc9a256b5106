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
  std::string Render(const SchedulerStats& s) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;  // (strategy, code) -> count
  Histogram ttft_ms_, itl_ms_;
};

}  // namespace kvstream::server
