// NCCL ranks of one process, one GPU each (issue 14): the transport of
// tensor parallelism on CUDA. The all-reduce is enqueued on the rank's
// current CUDA stream (no host synchronisation), so decode steps that
// contain it can still be captured in CUDA graphs (NCCL >= 2.9).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/parallel/communicator.h"

namespace kvstream {

// True if this build links NCCL (cmake/KvstreamTorch.cmake).
bool NcclAvailable();

// One communicator per device of `devices` (rank r on devices[r]), made
// together with ncclCommInitAll. UNIMPLEMENTED without NCCL; INTERNAL with
// NCCL's message if initialisation fails.
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclGroup(const std::vector<int>& devices);

}  // namespace kvstream
