#include "engine/parallel/tp_runner.h"

#include "engine/parallel/communicator.h"

namespace kvstream {

TpRunner::TpRunner(std::vector<Communicator*> comms) : comms_(std::move(comms)), results_(comms_.size()) {
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
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || job_id_ != seen; });
      if (stop_) return;
      seen = job_id_;
      job = job_;
    }
    absl::Status s = (*job)(rank);
    if (!s.ok()) {
      for (Communicator* c : comms_) c->Abort(s);  // the others may be waiting on this rank
    }
    std::lock_guard<std::mutex> lock(mu_);
    results_[rank] = std::move(s);
    if (--pending_ == 0) cv_.notify_all();
  }
}

absl::Status TpRunner::RunAll(const std::function<absl::Status(int)>& fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    pending_ = size() - 1;
    ++job_id_;
  }
  cv_.notify_all();
  absl::Status s0 = fn(0);
  if (!s0.ok()) {
    for (Communicator* c : comms_) c->Abort(s0);
  }
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return pending_ == 0; });
  job_ = nullptr;
  if (!s0.ok()) return s0;
  for (int r = 1; r < size(); ++r) {
    if (!results_[r].ok()) return results_[r];
  }
  return absl::OkStatus();
}

}  // namespace kvstream
