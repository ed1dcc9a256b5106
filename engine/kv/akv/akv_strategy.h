// The AKV strategy (design/strategies/akv.md): validates AkvConfig, opens
// AkvSequenceCache per request, predicts the bytes admission reserves, and
// runs a group's decode rows in one launch per kernel over the sequences'
// own tier buffers (akv_batched_decode.h), other groups sequence by sequence
// with the sequences' kernels on side streams so that they run at once.
#pragma once

#include <vector>

#include "engine/kv/akv/akv_cache.h"
#include "engine/kv/decode_graph_keys.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/side_streams.h"

namespace kvstream {

class AkvStrategy final : public Strategy {
 public:
  explicit AkvStrategy(const KvGeometry& g) : geometry_(g) {}

  const char* name() const override { return "akv"; }
  absl::Status Validate(const StrategyConfig& config) const override;
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens, int64_t max_new_tokens) const override;
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;

  // CUDA decode steps run from captured graphs: every buffer a sequence's
  // kernels touch is allocated once at Open and tier sizes live in device
  // memory, so one graph per set of sequences replays step after step; the
  // per-step selection and migration (EndStep) stay outside the graph.
  bool SupportsDecodePrepare() const override { return geometry_.device.is_cuda(); }
  absl::StatusOr<int64_t> PrepareDecode(absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                                        int64_t padded_rows, const StepContext& ctx) override;

 private:
  KvGeometry geometry_;
  DecodeGraphKeys keys_;  // per ordered set of sequence ids and padded rows
  // Up to this many sequences' kernels run at once (8: the batch where the
  // serial launches cost dense's step twice over, e2e_strategies_s14_h100.json).
  SideStreams side_{8};
};

}  // namespace kvstream
