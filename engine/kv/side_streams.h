// Fan-out of independent per-sequence GPU work onto side streams and back.
// Strategies whose sequences each own their buffers (AKV's tiers) launch a
// handful of small kernels per sequence and layer; issued on one stream they
// run one after another and a batch of 8 takes 8 times as long as one. Run
// on side streams forked from the caller's stream (an event recorded there,
// waited on by each side stream) and joined back (the caller's stream waits
// for each), they run at once; a CUDA graph captures them as parallel
// branches. Streams and events are made on first use and kept. On the CPU,
// or for one branch, everything runs in order on the caller's stream.
#pragma once

#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"

namespace kvstream {

class SideStreams {
 public:
  explicit SideStreams(int max_streams) : max_streams_(max_streams) {}
  ~SideStreams();
  SideStreams(const SideStreams&) = delete;
  SideStreams& operator=(const SideStreams&) = delete;

  // Runs fn(i) for i in [0, n), branch i on side stream i % max_streams made
  // current (so torch ops and launchers that take the current stream use
  // it), each after all work already on the caller's stream; the caller's
  // stream then waits for every branch. `device_index` < 0 (CPU): in order,
  // on the caller's stream. The first error is returned after the join.
  absl::Status ForEach(int device_index, int n, absl::FunctionRef<absl::Status(int)> fn);
  // Branches that can run at once (n branches share min(n, this) streams).
  int max_streams() const { return max_streams_; }

 private:
  int max_streams_;
  int device_ = -1;
  std::vector<void*> streams_;  // cudaStream_t, non-blocking, owned
  std::vector<void*> joins_;    // cudaEvent_t, one per stream
  void* fork_ = nullptr;        // cudaEvent_t
};

}  // namespace kvstream
