// The dense baseline: every token's K and V kept at the compute dtype (fp32 on
// CPU, bf16 on CUDA), attention exact. Storage is a multiple of kBlockTokens
// that grows geometrically (x1.5, so appends cost O(1) amortised) but never
// past the request's max_tokens, so it stays within what admission reserved.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "engine/kv/kv_cache.h"

namespace kvstream {

class DenseStrategy final : public Strategy {
 public:
  static constexpr int64_t kBlockTokens = 16;
  explicit DenseStrategy(const KvGeometry& g) : geometry_(g) {}

  // ---- Strategy ----
  const char* name() const override { return "dense"; }
  absl::Status Validate(const StrategyConfig& config) const override;
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens,
                       int64_t max_new_tokens) const override;

 private:
  KvGeometry geometry_;
};

class DenseSequenceCache final : public SequenceCache {
 public:
  DenseSequenceCache(const KvGeometry& g, int64_t max_tokens);

  // ---- SequenceCache ----
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, const SeqStep& seq,
                                     const StepContext& ctx) override;
  int64_t BytesHeld() const override;
  CacheReport Report() const override;

 private:
  // Grows layer `layer`'s buffers to hold at least `tokens` (block multiple).
  void Reserve(int64_t layer, int64_t tokens);

  KvGeometry geometry_;
  int64_t max_tokens_;              // 0 = unbounded
  std::vector<at::Tensor> keys_;    // per layer [Hkv, capacity, D]
  std::vector<at::Tensor> values_;  // per layer [Hkv, capacity, D]
  std::vector<int64_t> lengths_;    // per layer: tokens written
  int64_t peak_bytes_ = 0;
};

}  // namespace kvstream
