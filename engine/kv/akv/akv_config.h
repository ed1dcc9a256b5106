// AKV knobs (design/strategies/akv.md §5, with the overrides of
// strategies/README.md): every AkvConfig proto field, its default and range.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/kv/strategy_config.h"
#include "kernels/akv/akv_layout.h"

namespace kvstream {

struct AkvConfig {
  int hot_budget = 1024;
  int warm_budget = 2048;
  int warm_bits = 4;
  int cold_bits = 2;
  int group_size = 128;
  bool enable_cold_tier = true;
  int eviction_batch_size = 64;
  int initial_tokens_protected = 4;
  int recent_tokens_protected = 32;
  float importance_decay = 0.3f;
  int n_anchors = 16;
  AkvScoring scoring = AkvScoring::kImportance;
  float attention_weight = 0.7f;
  float recency_weight = 0.3f;
  bool enable_promotion = true;
  float promote_threshold = 0.05f;
  int promote_max_per_step = 0;
  int protect_first_layers = 0;
  int protect_last_layers = 0;
  float adaptive_hot_frac = 0.0f;
  int prefill_chunk_tokens = 128;
  int cold_scan_interval = 0;

  // hot_budget with adaptive_hot_frac applied for a sequence that has seen
  // `tokens` tokens (akv.md §5: max(hot_budget, floor(frac * P))).
  int EffectiveHotBudget(int64_t tokens) const;
  // The kernels' policy for a sequence that has seen `tokens` tokens.
  AkvPolicy Policy(int64_t tokens) const;
  // Most promotions per step (akv.md §4 step 4), for capacity sizing.
  int PromoteCap(int hot_budget) const;
  // The most warm rows a step leaves (akv.md §4 step 6 spills past it):
  // what the cold scan may fill warm up to.
  int WarmAfterStep() const { return warm_budget + eviction_batch_size - 1; }
};

// Parses and validates `config` (strategy "akv") for a model with `n_layers`
// layers of head dim `head_dim`; INVALID_ARGUMENT names the field and range.
absl::StatusOr<AkvConfig> ParseAkvConfig(const StrategyConfig& config, int64_t n_layers, int64_t head_dim);

}  // namespace kvstream
