#include "engine/kv/side_streams.h"

#include "absl/strings/str_cat.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace kvstream {
namespace {

// Every branch on the caller's stream, in order; stops at the first error.
absl::Status InOrder(int n, absl::FunctionRef<absl::Status(int)> fn) {
  for (int i = 0; i < n; ++i) {
    if (absl::Status s = fn(i); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

#ifdef KVSTREAM_HAVE_CUDA_TORCH
namespace {

absl::Status Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("side streams: ", what, ": ", cudaGetErrorString(e)));
}

}  // namespace

SideStreams::~SideStreams() {
  for (void* s : streams_) cudaStreamDestroy(static_cast<cudaStream_t>(s));
  for (void* e : joins_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  if (fork_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(fork_));
}

absl::Status SideStreams::ForEach(int device_index, int n, absl::FunctionRef<absl::Status(int)> fn) {
  if (device_index < 0 || n <= 1 || max_streams_ <= 1) return InOrder(n, fn);
  if (device_ >= 0 && device_ != device_index) {
    return absl::InternalError(absl::StrCat("side streams made on device ", device_, ", asked for ", device_index));
  }
  const c10::cuda::CUDAGuard device_guard(static_cast<c10::DeviceIndex>(device_index));
  const int used = n < max_streams_ ? n : max_streams_;
  if (fork_ == nullptr) {
    cudaEvent_t e = nullptr;
    if (absl::Status s = Check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "fork event"); !s.ok()) return s;
    fork_ = e;
    device_ = device_index;
  }
  while (static_cast<int>(streams_.size()) < used) {
    cudaStream_t st = nullptr;
    cudaEvent_t e = nullptr;
    if (absl::Status s = Check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream"); !s.ok()) return s;
    streams_.push_back(st);
    if (absl::Status s = Check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "join event"); !s.ok()) return s;
    joins_.push_back(e);
  }
  const c10::cuda::CUDAStream caller = at::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_index));
  if (absl::Status s = Check(cudaEventRecord(static_cast<cudaEvent_t>(fork_), caller.stream()), "fork"); !s.ok()) {
    return s;
  }
  absl::Status first = absl::OkStatus();
  int forked = 0;
  for (; forked < used && first.ok(); ++forked) {
    first = Check(cudaStreamWaitEvent(static_cast<cudaStream_t>(streams_[forked]), static_cast<cudaEvent_t>(fork_), 0),
                  "fork wait");
  }
  for (int i = 0; i < n && first.ok(); ++i) {
    const c10::cuda::CUDAStream side = c10::cuda::getStreamFromExternal(
        static_cast<cudaStream_t>(streams_[i % used]), static_cast<c10::DeviceIndex>(device_index));
    const c10::cuda::CUDAStreamGuard guard(side);
    first = fn(i);
  }
  // Join whatever was forked, also after an error: a capture must not end
  // with branches that never rejoin its stream.
  for (int j = 0; j < forked; ++j) {
    absl::Status s = Check(cudaEventRecord(static_cast<cudaEvent_t>(joins_[j]), static_cast<cudaStream_t>(streams_[j])),
                           "join");
    if (s.ok()) s = Check(cudaStreamWaitEvent(caller.stream(), static_cast<cudaEvent_t>(joins_[j]), 0), "join wait");
    if (first.ok()) first = s;
  }
  return first;
}

#else  // no CUDA in this build: everything runs in order

SideStreams::~SideStreams() = default;

absl::Status SideStreams::ForEach(int, int n, absl::FunctionRef<absl::Status(int)> fn) { return InOrder(n, fn); }

#endif

}  // namespace kvstream
