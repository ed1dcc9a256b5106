// Collective operations between the ranks of one tensor-parallel group
// (issue 14). A model shard (LlamaModel::Shard) holds 1/N of the attention
// heads and of the MLP's inner width; its o and down projections are
// row-parallel (each rank's output is a partial sum of the full product),
// so every layer needs two all-reduces. The interface keeps the model
// independent of how ranks talk: NCCL between GPUs of a host, or threads
// in one process (LocalGroup: CPU tests of the sharded math).
#pragma once

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"

namespace kvstream {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place on every rank: t = sum over the ranks' t (same shape and dtype
  // everywhere). Every rank must call it, in the same order.
  virtual absl::Status AllReduceSum(at::Tensor& t) = 0;
  // out[r] = rank r's `in` on every rank: `in` contiguous, the same shape
  // and dtype everywhere; `out` contiguous with size() * in.numel()
  // elements of that dtype (e.g. [size, *in.shape]). The vocab-parallel
  // lm-head gathers its logits with it.
  virtual absl::Status AllGather(const at::Tensor& in, at::Tensor& out) = 0;
  // A rank failed between collectives: every rank waiting in one (now or
  // later) returns `why` instead of waiting for it forever. The group is
  // unusable afterwards.
  virtual void Abort(const absl::Status& why) = 0;
};

}  // namespace kvstream
