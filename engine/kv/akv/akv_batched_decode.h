// One decode layer of many AKV sequences in one launch per kernel (CUDA).
// Each sequence owns its tier buffers, so AkvStrategy::ForwardGroup used to
// run every sequence's append + attention + merge on side streams: ~4
// launches per sequence and layer, 4 x B x L graph nodes a step. Here the
// rows' descriptors (AkvSequenceCache::BeginBatchedRow, made at Init) go into
// the launch parameters (AkvAttnBatch): one append, one attention, one merge
// per layer for up to kAkvAttnMaxBatch sequences; each sequence then updates
// its scores aside from its row of the batch's lse (EndBatchedRow).
// KVSTREAM_AKV_BATCHED=0 keeps the side-stream path (A/B).
#pragma once

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv/akv/akv_cache.h"
#include "engine/kv/kv_cache.h"

namespace kvstream {

// True when the group can take the batched path at `layer`: CUDA, two or
// more sequences, one decode row each at rows 0..B-1, bf16 and at most
// kAkvAttnMmaMaxGroup query heads per KV head (the tensor-core kernel), q
// rows 16-byte aligned, k/v packed with one row stride, out packed, and one
// tier family (heads, dims, bits, group size) at this layer.
bool AkvBatchedDecodeApplies(int64_t layer, absl::Span<AkvSequenceCache* const> caches,
                             absl::Span<const SeqStep> steps, const GroupTensors& t);

// The layer for the group (AkvBatchedDecodeApplies holds), on the current stream.
absl::Status AkvBatchedDecode(int64_t layer, absl::Span<AkvSequenceCache* const> caches,
                              absl::Span<const SeqStep> steps, GroupTensors& t, const StepContext& ctx);

}  // namespace kvstream
