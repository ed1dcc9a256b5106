// The dense baseline: every token's K and V kept at the compute dtype (fp32 on
// CPU, bf16 on CUDA), attention exact. Storage is a multiple of kBlockTokens
// that grows geometrically (x1.5, so appends cost O(1) amortised) but never
// past the request's max_tokens, so it stays within what admission reserved.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "engine/kv/kv_cache.h"

namespace kvstream {

// Exact causal attention of n new queries over T = past + n keys, grouped-
// query without copying K/V. q [H, n, D]; keys/values [Hkv, T, D]; -> [H, n, D].
at::Tensor CausalGqaAttention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t past);

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
  // CPU fp32: the group's decode rows attend in one parallel loop over raw
  // pointers (a step of 16 sequences would otherwise be 16 x ~8 ATen calls
  // per layer, whose dispatch cost exceeds the arithmetic at these sizes);
  // prompt chunks go through SequenceCache::Forward (SDPA).
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;

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

  // Decode fast path (CPU fp32): appends one token's k/v rows ([Hkv, D] with
  // `head_stride` floats between heads) to `layer`; returns the new length.
  absl::StatusOr<int64_t> AppendOne(int64_t layer, int64_t start_pos, const float* k, const float* v,
                                    int64_t head_stride);
  // [Hkv, capacity, D] buffers of `layer`.
  const float* keys(int64_t layer) const { return keys_[layer].const_data_ptr<float>(); }
  const float* values(int64_t layer) const { return values_[layer].const_data_ptr<float>(); }
  int64_t capacity(int64_t layer) const { return keys_[layer].size(1); }

 private:
  // Internal error unless a step appending at `start_pos` continues `layer`.
  absl::Status CheckStart(int64_t layer, int64_t start_pos) const;
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
