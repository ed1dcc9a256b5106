#include "engine/parallel/tp_runner.h"

#include "engine/parallel/communicator.h"

#include <chrono>

namespace kvstream {
namespace {

// How long a hand-off spins before sleeping: longer than the host's work
// between two decode steps, short enough that an idle server sleeps.
constexpr auto kSpin = std::chrono::microseconds(1000);

template <typename Done>
void SpinFor(const Done& done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  while (!done() && std::chrono::steady_clock::now() < until) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

}  // namespace

TpRunner::TpRunner(std::vector<Communicator*> comms, bool spin)
    : comms_(std::move(comms)), spin_(spin), results_(comms_.size()) {
  for (int r = 1; r < size(); ++r) workers_.emplace_back([this, r] { Worker(r); });
}

TpRunner::~TpRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void TpRunner::Worker(int rank) {
  uint64_t seen = 0;
  while (true) {
    const std::function<absl::Status(int)>* job = nullptr;
    if (spin_) SpinFor([&] { return job_id_.load(std::memory_order_acquire) != seen; });
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || job_id_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
      seen = job_id_.load(std::memory_order_acquire);
      job = job_;
    }
    absl::Status s = (*job)(rank);
    if (!s.ok()) {
      for (Communicator* c : comms_) c->Abort(s);  // the others may be waiting on this rank
    }
    results_[rank] = std::move(s);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);  // RunAll checks pending_ under it before it sleeps
      cv_.notify_all();
    }
  }
}

absl::Status TpRunner::RunAll(const std::function<absl::Status(int)>& fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    pending_.store(size() - 1, std::memory_order_relaxed);
    job_id_.fetch_add(1, std::memory_order_release);  // publishes job_ and pending_ to spinning workers
  }
  cv_.notify_all();
  absl::Status s0 = fn(0);
  if (!s0.ok()) {
    for (Communicator* c : comms_) c->Abort(s0);
  }
  if (spin_) SpinFor([&] { return pending_.load(std::memory_order_acquire) == 0; });
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  job_ = nullptr;
  if (!s0.ok()) return s0;
  for (int r = 1; r < size(); ++r) {
    if (!results_[r].ok()) return results_[r];
  }
  return absl::OkStatus();
}

}  // namespace kvstream
