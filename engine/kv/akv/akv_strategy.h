// The AKV strategy (design/strategies/akv.md): validates AkvConfig, opens
// AkvSequenceCache per request, predicts the bytes admission reserves, and
// runs a group's attention sequence by sequence (each sequence has its own
// tier buffers, so one launch per sequence and layer).
#pragma once

#include "engine/kv/akv/akv_cache.h"
#include "engine/kv/kv_cache.h"

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

 private:
  KvGeometry geometry_;
};

}  // namespace kvstream
