#include "engine/parallel/local_group.h"

#include <ATen/ATen.h>

#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace kvstream {
namespace {

// One rendezvous per collective: the last rank to arrive does the whole
// collective over every rank's inputs and outputs (the sum into every
// output, or each input into every output), then releases the others.
struct Rendezvous {
  explicit Rendezvous(int n) : size(n), ins(static_cast<size_t>(n)), outs(static_cast<size_t>(n)) {}
  const int size;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  std::vector<const at::Tensor*> ins;  // each rank's input
  std::vector<at::Tensor*> outs;       // each rank's output (the input itself for the in-place all-reduce)
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
    return Meet(&t, &t, [this] { return Sum(); });
  }

  absl::Status AllGather(const at::Tensor& in, at::Tensor& out) override {
    return Meet(&in, &out, [this] { return Gather(); });
  }

 private:
  template <typename Collective>
  absl::Status Meet(const at::Tensor* in, at::Tensor* out, const Collective& collective) {
    std::unique_lock<std::mutex> lock(r_->mu);
    if (!r_->aborted.ok()) return r_->aborted;
    const uint64_t gen = r_->generation;
    r_->ins[rank_] = in;
    r_->outs[rank_] = out;
    if (++r_->arrived < r_->size) {
      r_->cv.wait(lock, [&] { return r_->generation != gen || !r_->aborted.ok(); });
      return r_->generation != gen ? r_->result : r_->aborted;
    }
    r_->result = collective();
    r_->arrived = 0;
    ++r_->generation;
    r_->cv.notify_all();
    return r_->result;
  }

  absl::Status Gather() {
    const at::Tensor& first = *r_->ins[0];
    for (int i = 0; i < r_->size; ++i) {
      const at::Tensor& in = *r_->ins[i];
      const at::Tensor* out = r_->outs[i];
      if (in.sizes() != first.sizes() || in.scalar_type() != first.scalar_type() ||
          out->scalar_type() != first.scalar_type() || out->numel() != first.numel() * r_->size ||
          !out->is_contiguous()) {
        return absl::InternalError(absl::StrCat("all-gather: rank ", i, "'s input or output does not match rank 0's"));
      }
    }
    for (int i = 0; i < r_->size; ++i) {
      at::Tensor rows = r_->outs[i]->view({r_->size, first.numel()});
      for (int j = 0; j < r_->size; ++j) rows[j].copy_(r_->ins[j]->reshape({-1}));
    }
    return absl::OkStatus();
  }

  absl::Status Sum() {
    const at::Tensor& first = *r_->ins[0];
    for (int i = 1; i < r_->size; ++i) {
      const at::Tensor& t = *r_->ins[i];
      if (t.sizes() != first.sizes() || t.scalar_type() != first.scalar_type()) {
        return absl::InternalError(absl::StrCat("all-reduce: rank ", i, "'s tensor differs from rank 0's in shape or dtype"));
      }
    }
    at::Tensor sum = first.to(first.device(), at::kFloat, false, true);
    for (int i = 1; i < r_->size; ++i) sum.add_(r_->ins[i]->to(first.device(), at::kFloat));
    for (int i = 0; i < r_->size; ++i) r_->outs[i]->copy_(sum);
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
