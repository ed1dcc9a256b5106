// The last asynchronous upload from pinned host images (a decode step's
// block tables, slots, token ids and positions): a CUDA event recorded
// after the copies are enqueued, waited on before the host rewrites the
// images. Pinned images let the copies run without blocking the host, but
// the host must not overwrite an image the GPU has not read yet. A no-op on
// the CPU and in builds without CUDA.
#pragma once

#include "absl/status/status.h"

namespace kvstream {

class UploadFence {
 public:
  // owner names the user in error messages ("paged dense", "decode graphs").
  explicit UploadFence(const char* owner) : owner_(owner) {}
  ~UploadFence();
  UploadFence(const UploadFence&) = delete;
  UploadFence& operator=(const UploadFence&) = delete;

  // Creates the event on the current device (once; later calls do nothing).
  absl::Status Init();
  bool ready() const { return event_ != nullptr; }
  // Returns once the last recorded upload has read the images (at once if
  // none was recorded, or Init never ran).
  absl::Status WaitLast();
  // Marks the uploads just enqueued on the current CUDA stream.
  absl::Status Record();

 private:
  const char* owner_;
  void* event_ = nullptr;  // cudaEvent_t
};

}  // namespace kvstream
