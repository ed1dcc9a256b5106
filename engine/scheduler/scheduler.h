// Continuous batching. One engine thread owns the device; each step it
//   1. drops cancelled or expired requests (their KV freed at once),
//   2. admits queued requests while their predicted KV bytes
//      (Strategy::PredictBytes) fit the budget and the batch has room,
//   3. runs one forward over every active sequence (prefill chunks and decode
//      tokens together; attention grouped by strategy inside the model),
//   4. samples and posts each request's delta to its observer.
// When the batch is unchanged and every row is greedy, step 3 of the next
// step is launched before step 4 of this one (run-ahead, decode_graphs.h),
// so the GPU does not wait for the host between decode steps.
// Observers are called on the engine thread and must not block.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/active_sequence.h"
#include "engine/runtime/engine.h"

namespace kvstream {

struct SchedulerOptions {
  int64_t kv_budget_bytes = 0;   // device KV bytes all running requests may reserve
  int32_t max_batch = 64;        // sequences per step
  int32_t max_queue = 256;       // waiting requests; past it RESOURCE_EXHAUSTED
  int64_t prefill_chunk = 512;   // prompt tokens per sequence per step
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void OnDelta(StreamDelta delta) = 0;
  // Exactly once: the outcome, or why the request ended without one.
  virtual void OnDone(absl::StatusOr<GenerateOutcome> outcome) = 0;
};

struct SubmittedRequest {
  std::string request_id;
  GenerateSpec spec;
  std::shared_ptr<RequestObserver> observer;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
};

struct SchedulerStats {
  int64_t kv_bytes_in_use = 0;   // device bytes really held by running caches (after the last step)
  int64_t kv_bytes_reserved = 0; // sum of admitted requests' predictions
  int64_t kv_budget_bytes = 0;
  int64_t peak_kv_bytes_in_use = 0;
  int32_t running = 0;
  int32_t queued = 0;
  int64_t steps = 0;
  int64_t tokens_generated = 0;
  double tokens_per_second = 0;  // over the last kRateWindow
};

class Scheduler {
 public:
  Scheduler(Engine& engine, SchedulerOptions options);
  ~Scheduler();  // Stop()

  // Validates and enqueues. Errors: INVALID_ARGUMENT / UNIMPLEMENTED (bad
  // request), RESOURCE_EXHAUSTED (can never fit the budget, or queue full),
  // UNAVAILABLE (draining). OK means the observer will get OnDone exactly once.
  absl::Status Submit(SubmittedRequest request);
  // Stops admitting (new requests get UNAVAILABLE) and waits until every
  // accepted request has ended.
  void Drain();
  // Ends the thread; requests still queued or running end with UNAVAILABLE.
  void Stop();
  SchedulerStats Stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Running {
    uint64_t id = 0;  // names the row in a step still in flight
    SubmittedRequest req;
    ActiveSequence seq;
    int64_t reserved = 0;
    std::chrono::steady_clock::time_point admitted;
    std::chrono::steady_clock::time_point submitted;
  };
  struct Queued {
    SubmittedRequest req;
    int64_t predicted = 0;
    std::chrono::steady_clock::time_point submitted;
  };

  void Loop();
  // Ends `r` with `status` (cancel, deadline, error) and frees its cache.
  void Abort(Running& r, absl::Status status);
  void AdmitLocked(std::vector<Queued>* admitted);
  void Step();
  // Launches a step of `inputs`; `rows`: the Running::id of each.
  absl::StatusOr<LaunchedStep> Launch(std::vector<SeqInput> inputs, std::vector<uint64_t> rows);
  // Fails every running request with `status` (a failed step).
  void AbortAll(const absl::Status& status);

  Engine& engine_;
  SchedulerOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // work arrived / stop
  std::condition_variable idle_cv_;  // queue and running both empty
  std::deque<Queued> queue_;
  std::vector<std::unique_ptr<Running>> running_;  // engine thread only (size mirrored in stats_)
  std::optional<LaunchedStep> pending_;  // engine thread only: the step run ahead, if any
  uint64_t next_id_ = 1;
  std::chrono::steady_clock::time_point last_read_ = std::chrono::steady_clock::now();
  SchedulerStats stats_;
  // (step end, tokens produced) for the tokens/s gauge.
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> recent_;
  static constexpr std::chrono::seconds kRateWindow{10};
  bool draining_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace kvstream
