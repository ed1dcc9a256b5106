// The threads of a tensor-parallel group in one process: rank 0 is the
// caller's thread (the engine step, the scheduler), ranks 1..N-1 are
// workers that each keep their device and InferenceMode for the life of the
// group. RunAll runs one function on every rank at once and waits for all:
// the ranks meet inside it at each all-reduce. With `spin`, each side spins briefly on
// the hand-off before sleeping on the condition variable: decode steps come
// every few ms with ~0.1 ms of host work between them, and a sleeping
// thread's wake-up (tens of µs, twice per step) is a visible share of a
// TP=2 step (docs/scaling.md §5).
#pragma once

#include <atomic>
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
  // spin: hand-offs spin up to 1 ms before sleeping (GPU ranks, whose
  // threads mostly wait on their streams; CPU ranks need the cores).
  explicit TpRunner(std::vector<Communicator*> comms, bool spin = false);
  ~TpRunner();
  TpRunner(const TpRunner&) = delete;
  TpRunner& operator=(const TpRunner&) = delete;

  int size() const { return static_cast<int>(comms_.size()); }
  // fn(r) on every rank, rank 0 on this thread; the first error (by rank).
  absl::Status RunAll(const std::function<absl::Status(int rank)>& fn);

 private:
  void Worker(int rank);

  std::vector<Communicator*> comms_;
  const bool spin_;
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<absl::Status(int)>* job_ = nullptr;
  std::atomic<uint64_t> job_id_{0};  // written under mu_ (after job_), read spinning without it
  std::atomic<int> pending_{0};      // workers still running the job
  bool stop_ = false;
  std::vector<absl::Status> results_;
  std::vector<std::thread> workers_;
};

}  // namespace kvstream
