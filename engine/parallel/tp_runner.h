// The threads of a tensor-parallel group in one process: rank 0 is the
// caller's thread (the engine step, the scheduler), ranks 1..N-1 are
// workers that each keep their device and InferenceMode for the life of the
// group. RunAll runs one function on every rank at once and waits for all:
// the ranks meet inside it at each all-reduce.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace kvstream {

class Communicator;

class TpRunner {
 public:
  // comms[r] is rank r's (aborted if a rank fails, so no rank waits on it).
  explicit TpRunner(std::vector<Communicator*> comms);
  ~TpRunner();
  TpRunner(const TpRunner&) = delete;
  TpRunner& operator=(const TpRunner&) = delete;

  int size() const { return static_cast<int>(comms_.size()); }
  // fn(r) on every rank, rank 0 on this thread; the first error (by rank).
  absl::Status RunAll(const std::function<absl::Status(int rank)>& fn);

 private:
  void Worker(int rank);

  std::vector<Communicator*> comms_;
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<absl::Status(int)>* job_ = nullptr;
  uint64_t job_id_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::vector<absl::Status> results_;
  std::vector<std::thread> workers_;
};

}  // namespace kvstream
