#include "engine/kv/akv/akv_config.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/kv/knob_reader.h"

namespace kvstream {

int AkvConfig::EffectiveHotBudget(int64_t tokens) const {
  const int64_t adaptive = static_cast<int64_t>(std::floor(static_cast<double>(adaptive_hot_frac) * tokens));
  return static_cast<int>(std::max<int64_t>(hot_budget, std::min<int64_t>(adaptive, INT32_MAX / 4)));
}

int AkvConfig::PromoteCap(int hot) const {
  AkvPolicy p = Policy(0);
  return AkvPromoteCap(p, hot);
}

AkvPolicy AkvConfig::Policy(int64_t tokens) const {
  AkvPolicy p;
  p.mode = scoring;
  p.hot_budget = EffectiveHotBudget(tokens);
  p.warm_budget = warm_budget;
  p.eviction_batch_size = eviction_batch_size;
  p.initial_tokens_protected = initial_tokens_protected;
  p.recent_tokens_protected = recent_tokens_protected;
  p.n_anchors = n_anchors;
  p.enable_promotion = enable_promotion;
  p.promote_threshold = promote_threshold;
  p.promote_max_per_step = promote_max_per_step;
  return p;
}

absl::StatusOr<AkvConfig> ParseAkvConfig(const StrategyConfig& config, int64_t n_layers, int64_t head_dim) {
  KnobReader r(config, "akv");
  AkvConfig c;
  c.hot_budget = static_cast<int>(r.Int("hot_budget", 1024, 16, 65536));
  c.warm_budget = static_cast<int>(r.Int("warm_budget", 2048, 0, 1048576));
  c.warm_bits = static_cast<int>(r.OneOf("warm_bits", 4, {2, 4, 8}));
  c.cold_bits = static_cast<int>(r.OneOf("cold_bits", 2, {2, 4, 8}));
  c.group_size = static_cast<int>(r.OneOf("group_size", 128, {32, 64, 128}));
  c.enable_cold_tier = r.Bool("enable_cold_tier", true);
  c.eviction_batch_size = static_cast<int>(r.Int("eviction_batch_size", 64, 1, 1024));
  c.initial_tokens_protected = static_cast<int>(r.Int("initial_tokens_protected", 4, 0, c.hot_budget / 2));
  c.recent_tokens_protected = static_cast<int>(r.Int("recent_tokens_protected", 32, 0, c.hot_budget));
  c.importance_decay = static_cast<float>(r.Real("importance_decay", 0.3, 0.0, false, 1.0, true));
  c.n_anchors = static_cast<int>(r.Int("n_anchors", 16, 0, c.hot_budget));
  const std::string mode =
      r.Enum("scoring_strategy", "IMPORTANCE", "AKV_SCORING_STRATEGY_", {"IMPORTANCE", "HYBRID", "FIFO"});
  c.scoring = mode == "HYBRID" ? AkvScoring::kHybrid : mode == "FIFO" ? AkvScoring::kFifo : AkvScoring::kImportance;
  c.attention_weight = static_cast<float>(r.Real("attention_weight", 0.7, 0.0, false, 1.0, false));
  c.recency_weight = static_cast<float>(r.Real("recency_weight", 0.3, 0.0, false, 1.0, false));
  c.enable_promotion = r.Bool("enable_promotion", true);
  c.promote_threshold = static_cast<float>(r.Real("promote_threshold", 0.05, 0.0, true, 1.0, true));
  c.promote_max_per_step = static_cast<int>(r.Int("promote_max_per_step", 0, 0, c.hot_budget));
  // README decision: PER_CHANNEL keys are not in this version.
  r.Enum("key_quant_mode", "PER_TOKEN", "AKV_KEY_QUANT_MODE_", {"PER_TOKEN"});
  c.protect_first_layers = static_cast<int>(r.Int("protect_first_layers", 0, 0, n_layers));
  c.protect_last_layers = static_cast<int>(r.Int("protect_last_layers", 0, 0, n_layers));
  c.adaptive_hot_frac = static_cast<float>(r.Real("adaptive_hot_frac", 0.0, 0.0, false, 1.0, false));
  c.prefill_chunk_tokens = static_cast<int>(r.Int("prefill_chunk_tokens", 128, 16, 4096));
  c.cold_scan_interval = static_cast<int>(r.Int("cold_scan_interval", 0, 0, 1024));

  // Cross-field rules (strategies/README.md "AKV"): the protected sets must
  // fit the hot tier, so it can never outgrow its buffer.
  if (c.scoring == AkvScoring::kImportance) {
    if (c.initial_tokens_protected > c.n_anchors) {
      r.Fail(absl::StrCat(r.Field("initial_tokens_protected"), " must be <= n_anchors (", c.n_anchors,
                          ") with IMPORTANCE scoring (got ", c.initial_tokens_protected, ")"));
    }
  } else if (c.initial_tokens_protected + c.recent_tokens_protected > c.hot_budget) {
    r.Fail(absl::StrCat(r.Field("recent_tokens_protected"), " + initial_tokens_protected must be <= hot_budget (",
                        c.hot_budget, ") with ", mode, " scoring (got ", c.recent_tokens_protected, " + ",
                        c.initial_tokens_protected, ")"));
  }
  if (c.protect_first_layers + c.protect_last_layers > n_layers) {
    r.Fail(absl::StrCat(r.Field("protect_first_layers"), " + protect_last_layers must be <= the model's ", n_layers,
                        " layers (got ", c.protect_first_layers, " + ", c.protect_last_layers, ")"));
  }
  if (head_dim % std::min<int64_t>(c.group_size, head_dim) != 0) {
    r.Fail(absl::StrCat(r.Field("group_size"), " must divide the head dim ", head_dim, " (got ", c.group_size, ")"));
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return c;
}

}  // namespace kvstream
