// Ranks that are threads of one process, for running tensor-parallel shards
// on the CPU (tests of the sharded forward against the unsharded one; the
// same code path as NCCL minus the transport). Not for production: the sum
// is done by one thread on the host.
#pragma once

#include <memory>
#include <vector>

#include "engine/parallel/communicator.h"

namespace kvstream {

// size communicators sharing one rendezvous; rank r's is element r. Each
// rank calls a collective from its own thread; it returns once all size
// ranks have arrived and the result is in every rank's output: AllReduceSum
// accumulates in fp32, ranks in order 0..size-1 (every run sums the same
// way); AllGather copies each rank's input to its slot of every output.
std::vector<std::unique_ptr<Communicator>> MakeLocalGroup(int size);

}  // namespace kvstream
