// One decode layer of many AKV sequences in one launch per kernel (CUDA).
// Each sequence owns its tier buffers, so AkvStrategy::ForwardGroup used to
// run every sequence's append + attention + merge on side streams: ~4
// launches per sequence and layer, 4 x B x L graph nodes a step. Here the
// rows' descriptors (AkvSequenceCache::BeginBatchedRow, made at Init) go into
// the launch parameters (AkvAttnBatch): one append, one attention, one merge
// per layer for up to kAkvAttnMaxBatch sequences; each sequence then updates
// its scores aside from its row of the batch's lse (EndBatchedRow).
// Opt-in (KVSTREAM_AKV_BATCHED=1): on the H100 the side-stream chains decode
// ~5% faster end to end ((8, 8K) 956.5 vs 909.0 tok/s, (32, 8K) 2148.3 vs
// 2045.4, (16, 32K) 1524.6 vs 1453.5; e2e_akv_{fanout,batched}_s19_h100.json)
// and their attention reads at 74-89% of copy where this launch reaches
// 65-75% at B = 8-32, n_warm >= 32K (akv_attention_batch_all_s19_h100.json);
// it saves graph nodes (~4x fewer per captured batch), not time.
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

// Layers run through AkvBatchedDecode in this process (eager or captured): tests check the path ran.
int64_t AkvBatchedDecodeLayers();

// The layer for the group (AkvBatchedDecodeApplies holds), on the current stream.
absl::Status AkvBatchedDecode(int64_t layer, absl::Span<AkvSequenceCache* const> caches,
                              absl::Span<const SeqStep> steps, GroupTensors& t, const StepContext& ctx);

}  // namespace kvstream
