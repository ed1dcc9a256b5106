#include "engine/parallel/local_group.h"

#include <ATen/ATen.h>

#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace kvstream {
namespace {

// One rendezvous per collective: the last rank to arrive sums every slot
// and writes the result back into all of them, then releases the others.
struct Rendezvous {
  explicit Rendezvous(int n) : size(n), slots(static_cast<size_t>(n)) {}
  const int size;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  std::vector<at::Tensor*> slots;
  absl::Status result;   // of the collective that completed last
  absl::Status aborted;  // set once by Abort
};

class LocalCommunicator final : public Communicator {
 public:
  LocalCommunicator(std::shared_ptr<Rendezvous> r, int rank) : r_(std::move(r)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return r_->size; }

  void Abort(const absl::Status& why) override {
    std::lock_guard<std::mutex> lock(r_->mu);
    if (r_->aborted.ok()) r_->aborted = why.ok() ? absl::AbortedError("tensor-parallel group aborted") : why;
    r_->cv.notify_all();
  }

  absl::Status AllReduceSum(at::Tensor& t) override {
    std::unique_lock<std::mutex> lock(r_->mu);
    if (!r_->aborted.ok()) return r_->aborted;
    const uint64_t gen = r_->generation;
    r_->slots[rank_] = &t;
    if (++r_->arrived < r_->size) {
      r_->cv.wait(lock, [&] { return r_->generation != gen || !r_->aborted.ok(); });
      return r_->generation != gen ? r_->result : r_->aborted;
    }
    r_->result = Sum();
    r_->arrived = 0;
    ++r_->generation;
    r_->cv.notify_all();
    return r_->result;
  }

 private:
  absl::Status Sum() {
    const at::Tensor& first = *r_->slots[0];
    for (int i = 1; i < r_->size; ++i) {
      const at::Tensor& t = *r_->slots[i];
      if (t.sizes() != first.sizes() || t.scalar_type() != first.scalar_type()) {
        return absl::InternalError(absl::StrCat("all-reduce: rank ", i, "'s tensor differs from rank 0's in shape or dtype"));
      }
    }
    at::Tensor sum = first.to(first.device(), at::kFloat, false, true);
    for (int i = 1; i < r_->size; ++i) sum.add_(r_->slots[i]->to(first.device(), at::kFloat));
    for (int i = 0; i < r_->size; ++i) r_->slots[i]->copy_(sum);
    return absl::OkStatus();
  }

  std::shared_ptr<Rendezvous> r_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> MakeLocalGroup(int size) {
  auto r = std::make_shared<Rendezvous>(size);
  std::vector<std::unique_ptr<Communicator>> out;
  for (int i = 0; i < size; ++i) out.push_back(std::make_unique<LocalCommunicator>(r, i));
  return out;
}

}  // namespace kvstream
