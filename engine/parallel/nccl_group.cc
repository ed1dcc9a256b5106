#include "engine/parallel/nccl_group.h"

#include "absl/strings/str_cat.h"

#if defined(KVSTREAM_HAVE_NCCL) && defined(KVSTREAM_HAVE_CUDA_TORCH)
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <nccl.h>

#include <atomic>
#include <cstdlib>
#endif

namespace kvstream {

#if defined(KVSTREAM_HAVE_NCCL) && defined(KVSTREAM_HAVE_CUDA_TORCH)
namespace {

absl::StatusOr<ncclDataType_t> NcclType(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return ncclBfloat16;
    case at::kHalf: return ncclFloat16;
    case at::kFloat: return ncclFloat32;
    default: return absl::InternalError(absl::StrCat("all-reduce of ", c10::toString(t), " is not supported"));
  }
}

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(int rank, int size, int device, ncclComm_t comm)
      : rank_(rank), size_(size), device_(device), comm_(comm) {}
  ~NcclCommunicator() override {
    if (!aborted_.exchange(true)) ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  absl::Status AllReduceSum(at::Tensor& t) override {
    if (aborted_.load()) return absl::AbortedError("tensor-parallel group aborted");
    if (!t.is_cuda() || t.get_device() != device_ || !t.is_contiguous()) {
      return absl::InternalError(absl::StrCat("all-reduce on rank ", rank_, " needs a contiguous tensor on cuda:",
                                              device_));
    }
    auto type = NcclType(t.scalar_type());
    if (!type.ok()) return type.status();
    c10::cuda::CUDAGuard guard(device_);
    const ncclResult_t r = ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), *type, ncclSum,
                                         comm_, at::cuda::getCurrentCUDAStream(device_));
    if (r != ncclSuccess) {
      return absl::InternalError(absl::StrCat("ncclAllReduce on rank ", rank_, ": ", ncclGetErrorString(r)));
    }
    return absl::OkStatus();
  }

  absl::Status AllGather(const at::Tensor& in, at::Tensor& out) override {
    if (aborted_.load()) return absl::AbortedError("tensor-parallel group aborted");
    for (const at::Tensor* t : {&in, static_cast<const at::Tensor*>(&out)}) {
      if (!t->is_cuda() || t->get_device() != device_ || !t->is_contiguous()) {
        return absl::InternalError(absl::StrCat("all-gather on rank ", rank_, " needs contiguous tensors on cuda:",
                                                device_));
      }
    }
    if (out.scalar_type() != in.scalar_type() || out.numel() != in.numel() * size_) {
      return absl::InternalError(absl::StrCat("all-gather on rank ", rank_, ": output of ", out.numel(),
                                              " elements for ", size_, " x ", in.numel()));
    }
    auto type = NcclType(in.scalar_type());
    if (!type.ok()) return type.status();
    c10::cuda::CUDAGuard guard(device_);
    const ncclResult_t r = ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), *type, comm_,
                                         at::cuda::getCurrentCUDAStream(device_));
    if (r != ncclSuccess) {
      return absl::InternalError(absl::StrCat("ncclAllGather on rank ", rank_, ": ", ncclGetErrorString(r)));
    }
    return absl::OkStatus();
  }

  void Abort(const absl::Status&) override {
    if (!aborted_.exchange(true)) ncclCommAbort(comm_);  // wakes ranks blocked in a collective
  }

 private:
  const int rank_, size_, device_;
  ncclComm_t comm_;
  std::atomic<bool> aborted_{false};
};

}  // namespace

bool NcclAvailable() { return true; }

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclGroup(const std::vector<int>& devices) {
  // NVLink SHARP (multicast) off unless the operator asks for it: on shared
  // hosts a failure there can take the GPUs out of service (our GPU
  // machines' rule), and decode all-reduces are a few KB, where it gains
  // little.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  // No captured collective is ever outstanding beside an uncaptured one on
  // the same communicator: every step (eager prefill or decode-graph
  // replay) ends in a host sync before the next is enqueued. So NCCL's
  // support for mixing them is dropped: 5.4 vs 6.4 us per 8 KB all-reduce in
  // a graph, TP=2 decode +3-4% (bench/parallel/nccl_sweep.sh on H200x2,
  // bench/results/gpu/nccl_sweep_s11_h200x2.json).
  setenv("NCCL_GRAPH_MIXING_SUPPORT", "0", /*overwrite=*/0);
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(static_cast<size_t>(n));
  const ncclResult_t r = ncclCommInitAll(comms.data(), n, devices.data());
  if (r != ncclSuccess) return absl::InternalError(absl::StrCat("ncclCommInitAll: ", ncclGetErrorString(r)));
  std::vector<std::unique_ptr<Communicator>> out;
  for (int i = 0; i < n; ++i) out.push_back(std::make_unique<NcclCommunicator>(i, n, devices[i], comms[i]));
  return out;
}

#else

bool NcclAvailable() { return false; }

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclGroup(const std::vector<int>&) {
  return absl::UnimplementedError("--tensor-parallel > 1 on CUDA needs NCCL, which this build does not link");
}

#endif

}  // namespace kvstream
