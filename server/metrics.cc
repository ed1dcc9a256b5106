#include "server/metrics.h"

#include "absl/strings/str_format.h"

namespace kvstream::server {

void Histogram::Observe(double v) {
  std::lock_guard<std::mutex> l(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i] += 1;
  sum_ += v;
  count_ += 1;
}

void Histogram::Render(const std::string& name, const std::string& help, std::string* out) const {
  std::lock_guard<std::mutex> l(mu_);
  absl::StrAppendFormat(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    absl::StrAppendFormat(out, "%s_bucket{le=\"%g\"} %d\n", name, bounds_[i], cum);
  }
  cum += counts_.back();
  absl::StrAppendFormat(out, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %.6f\n%s_count %d\n", name, cum, name, sum_,
                        name, count_);
}

Metrics::Metrics()
    : ttft_ms_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      itl_ms_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void Metrics::RequestEnded(const std::string& strategy, const std::string& code) {
  std::lock_guard<std::mutex> l(mu_);
  requests_[{strategy, code}] += 1;
}

void Metrics::ObserveCache(const std::string& strategy, int64_t kv_bytes, int64_t peak_kv_bytes,
                           int64_t dense_bytes) {
  std::lock_guard<std::mutex> l(mu_);
  CacheSums& c = cache_[strategy];
  c.kv_bytes += static_cast<double>(kv_bytes);
  c.peak_kv_bytes += static_cast<double>(peak_kv_bytes);
  c.dense_bytes += static_cast<double>(dense_bytes);
}

std::string Metrics::Render(const SchedulerStats& s) const {
  std::string out;
  out += "# HELP kvstream_requests_total Requests ended, by strategy and gRPC status code.\n"
         "# TYPE kvstream_requests_total counter\n";
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [key, n] : requests_) {
      absl::StrAppendFormat(&out, "kvstream_requests_total{strategy=\"%s\",code=\"%s\"} %d\n", key.first,
                            key.second, n);
    }
    auto per_strategy = [&](const char* name, const char* help, double CacheSums::*field) {
      absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
      for (const auto& [strategy, sums] : cache_) {
        absl::StrAppendFormat(&out, "%s{strategy=\"%s\"} %.17g\n", name, strategy, sums.*field);
      }
    };
    per_strategy("kvstream_request_kv_bytes_total",
                 "KV bytes held (device + host) at the end of each OK request, summed, by strategy.",
                 &CacheSums::kv_bytes);
    per_strategy("kvstream_request_peak_kv_bytes_total", "Peak KV bytes of each OK request, summed, by strategy.",
                 &CacheSums::peak_kv_bytes);
    per_strategy("kvstream_request_dense_equivalent_bytes_total",
                 "Bytes a dense 16-bit cache would have held for each OK request, summed, by strategy.",
                 &CacheSums::dense_bytes);
  }
  auto gauge = [&](const char* name, const char* help, double v) {
    absl::StrAppendFormat(&out, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
  };
  gauge("kvstream_queue_length", "Requests waiting for admission.", s.queued);
  gauge("kvstream_running_sequences", "Sequences in the running batch.", s.running);
  gauge("kvstream_kv_bytes_in_use", "KV cache bytes held by running requests.", s.kv_bytes_in_use);
  gauge("kvstream_kv_bytes_reserved", "KV cache bytes reserved by admitted requests (predicted).",
        s.kv_bytes_reserved);
  gauge("kvstream_kv_budget_bytes", "KV cache budget (--kv-budget-bytes).", s.kv_budget_bytes);
  gauge("kvstream_kv_bytes_peak", "High-water mark of KV bytes in use.", s.peak_kv_bytes_in_use);
  absl::StrAppendFormat(&out,
                        "# HELP kvstream_tokens_generated_total Tokens generated.\n"
                        "# TYPE kvstream_tokens_generated_total counter\nkvstream_tokens_generated_total %d\n",
                        s.tokens_generated);
  gauge("kvstream_tokens_per_second", "Tokens generated per second over the last 10 s.", s.tokens_per_second);
  absl::StrAppendFormat(&out,
                        "# HELP kvstream_engine_steps_total Engine steps run.\n"
                        "# TYPE kvstream_engine_steps_total counter\nkvstream_engine_steps_total %d\n",
                        s.steps);
  ttft_ms_.Render("kvstream_time_to_first_token_seconds", "Time to first token.", &out);
  itl_ms_.Render("kvstream_inter_token_latency_seconds", "Mean inter-token latency per request.", &out);
  return out;
}

}  // namespace kvstream::server
