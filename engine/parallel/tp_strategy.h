// A KV strategy under tensor parallelism (issue 14): one instance per rank,
// each built on its rank's geometry (its own KV heads), opened together so a
// request holds one cache per rank. The engine and the scheduler see only
// these wrappers (rank 0's answers for planning: prefill chunks and plans,
// admission); LlamaModel's tensor-parallel step hands each rank its own
// strategy and cache. The cache report sums the ranks' bytes.
#pragma once

#include <memory>
#include <vector>

#include "engine/kv/kv_cache.h"

namespace kvstream {

class TpSequenceCache final : public SequenceCache {
 public:
  TpSequenceCache(std::vector<std::unique_ptr<SequenceCache>> ranks, std::vector<c10::Device> devices)
      : ranks_(std::move(ranks)), devices_(std::move(devices)) {}
  ~TpSequenceCache() override;
  SequenceCache* rank(int r) const { return ranks_[static_cast<size_t>(r)].get(); }
  int size() const { return static_cast<int>(ranks_.size()); }

  // Attention runs per rank on the rank's cache, never through the wrapper.
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext& ctx) override;
  absl::Status EndStep(const SeqStep& seq, const StepContext& ctx) override;
  std::optional<int64_t> PrefillChunk() const override { return ranks_[0]->PrefillChunk(); }
  // Every rank is asked (a strategy may fix state when it plans, e.g.
  // LASER-KV's budget); the plans depend on token counts only, so rank 0's
  // is every rank's.
  std::optional<PrefillPlan> NextPrefill(int64_t prompt_done, int64_t prompt_len) const override;
  int64_t BytesHeld() const override;
  int64_t DeviceBytesHeld() const override;
  CacheReport Report() const override;

 private:
  std::vector<std::unique_ptr<SequenceCache>> ranks_;
  std::vector<c10::Device> devices_;  // rank r's device: current while rank r's cache works
};

class TpStrategy final : public Strategy {
 public:
  // ranks[r]: rank r's instance of one strategy (owned by its registry),
  // built for devices[r]. Calls made here on a rank's behalf (Open, EndStep)
  // run with that device current: its streams, events and kernels belong
  // there, whichever thread (rank 0's, the scheduler's) makes the call.
  TpStrategy(std::vector<Strategy*> ranks, std::vector<c10::Device> devices)
      : ranks_(std::move(ranks)), devices_(std::move(devices)) {}
  Strategy* rank(int r) const { return ranks_[static_cast<size_t>(r)]; }

  const char* name() const override { return ranks_[0]->name(); }
  absl::Status Validate(const StrategyConfig& config) const override { return ranks_[0]->Validate(config); }
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  // Per device: rank 0 holds the largest share of the KV heads (ShardOf),
  // so its bytes are what admission checks against one device's KV budget.
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens, int64_t max_new_tokens) const override {
    return ranks_[0]->PredictBytes(config, prompt_tokens, max_new_tokens);
  }
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;

 private:
  std::vector<Strategy*> ranks_;
  std::vector<c10::Device> devices_;
};

}  // namespace kvstream
