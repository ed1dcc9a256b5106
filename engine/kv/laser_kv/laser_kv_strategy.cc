#include "engine/kv/laser_kv/laser_kv_strategy.h"

#include <c10/core/ScalarType.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/laser_kv/laser_kv.h"

namespace kvstream {

absl::Status LaserKvStrategy::Validate(const StrategyConfig& config) const {
  absl::StatusOr<LaserKvConfig> c = ParseLaserKvConfig(config, geometry_.context_length);
  if (!c.ok()) return c.status();
  if (!LaserHeadDimOk(static_cast<int>(geometry_.head_dim))) {
    return absl::FailedPreconditionError(absl::StrCat("laser_kv kernels are built for head_dim 64 and 128; the model has ",
                                                      geometry_.head_dim));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceCache>> LaserKvStrategy::Open(const StrategyConfig& config) {
  if (absl::Status s = Validate(config); !s.ok()) return s;
  absl::StatusOr<LaserKvConfig> c = ParseLaserKvConfig(config, geometry_.context_length);
  if (!c.ok()) return c.status();
  return std::make_unique<LaserKvSequenceCache>(geometry_, *c, config.max_tokens);
}

int64_t LaserKvStrategy::BytesPerToken() const {
  return 2 * geometry_.n_layers * geometry_.n_kv_heads * geometry_.head_dim *
             static_cast<int64_t>(c10::elementSize(geometry_.dtype)) +
         4;
}

int64_t LaserKvStrategy::PredictBytes(const StrategyConfig& config, int64_t prompt_tokens,
                                      int64_t max_new_tokens) const {
  const int64_t bpt = BytesPerToken();
  absl::StatusOr<LaserKvConfig> c = ParseLaserKvConfig(config, geometry_.context_length);
  if (!c.ok()) return (prompt_tokens + max_new_tokens) * bpt;  // Validate refuses it anyway
  const LaserBudget b = ComputeLaserBudget(*c, prompt_tokens);
  if (b.dense) return (prompt_tokens + max_new_tokens) * bpt;
  // §6.11: tokens held after prefill, then the query and the generated tokens.
  const int64_t held = c->mode == LaserMode::kAccumulate
                           ? std::min(b.A, b.S) + b.blocks * b.G + b.W
                           : b.B;
  const int64_t held_final = std::min(held, b.S) + b.q + max_new_tokens;
  // Prefill peak (§3 + README): old C, T (accumulate), the block and the
  // probe, and the new C being written out of place (sized for the final
  // tokens at the last block).
  const int64_t block = std::min<int64_t>(c->block_size, b.S);
  const int64_t tail = c->mode == LaserMode::kAccumulate ? b.W : 0;
  const int64_t peak = std::min(held, b.S) + tail + block + b.q + held_final;
  // Scratch held between steps: R, the block's window scores, the probe's keys.
  const int64_t scratch = geometry_.head_dim * c->num_tables * c->num_bits * 4 +
                          (std::min(held, b.S) + tail + block) * 4 + b.q * bpt;
  return std::max(held_final, peak) * bpt + scratch;
}

}  // namespace kvstream
