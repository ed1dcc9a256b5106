#include "engine/runtime/upload_fence.h"

#include "absl/strings/str_cat.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace kvstream {

#ifdef KVSTREAM_HAVE_CUDA_TORCH

namespace {
absl::Status Check(cudaError_t err, const char* owner, const char* what) {
  if (err == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(owner, ": ", what, ": ", cudaGetErrorString(err)));
}
}  // namespace

UploadFence::~UploadFence() {
  if (event_ != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

absl::Status UploadFence::Init() {
  if (event_ != nullptr) return absl::OkStatus();
  cudaEvent_t e = nullptr;
  if (absl::Status s = Check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), owner_, "cudaEventCreate");
      !s.ok()) {
    return s;
  }
  event_ = e;
  return absl::OkStatus();
}

absl::Status UploadFence::WaitLast() {
  if (event_ == nullptr) return absl::OkStatus();
  return Check(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)), owner_, "waiting for the last upload");
}

absl::Status UploadFence::Record() {
  if (event_ == nullptr) return absl::OkStatus();
  return Check(cudaEventRecord(static_cast<cudaEvent_t>(event_), c10::cuda::getCurrentCUDAStream()), owner_,
               "recording the upload");
}

#else  // no CUDA: nothing is uploaded asynchronously

UploadFence::~UploadFence() = default;
absl::Status UploadFence::Init() { return absl::OkStatus(); }
absl::Status UploadFence::WaitLast() { return absl::OkStatus(); }
absl::Status UploadFence::Record() { return absl::OkStatus(); }

#endif

}  // namespace kvstream
