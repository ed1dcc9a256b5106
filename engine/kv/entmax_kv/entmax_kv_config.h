// EntmaxKV knobs (design/strategies/entmax_kv.md §5, with the decisions of
// strategies/README.md): every EntmaxKvConfig proto field, its default and
// range. This version implements the top-k selector with alpha = 1 (Quest-
// style softmax over the selected pages) on pages of 16 tokens; the rest of
// the table is parsed and range-checked, and what is not implemented yet is
// refused with INVALID_ARGUMENT naming the knob.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/kv/strategy_config.h"

namespace kvstream {

struct EntmaxKvConfig {
  enum class Selector { kTopk, kGaussian };
  enum class TauMode { kExact, kFixed, kCorrected };
  enum class GqaSelection { kSharedKv, kPerQueryHead };

  Selector selector = Selector::kTopk;
  float alpha = 1.0f;
  int page_size = 16;
  int token_budget = 2048;
  int niter = 3;
  TauMode tau_mode = TauMode::kCorrected;
  int tau_correction_iters = 3;
  bool clamp_tau = true;
  float safety_margin_z = 0.0f;
  float max_quantile = 0.995f;
  float threshold_excess_margin_fraction = 0.1f;
  float tau_clamp_page_max_quantile = 0.5f;
  int64_t min_context = 0;
  int sink_pages = 1;
  int dense_layers = 2;
  GqaSelection gqa_selection = GqaSelection::kSharedKv;
  bool normalize_output = true;
  float max_selected_fraction = 1.0f;

  int budget_pages() const { return token_budget / page_size; }
};

// Parses and validates `config` (strategy "entmax_kv") for a model with
// `n_layers` layers; INVALID_ARGUMENT names kv_compression.entmax_kv.<knob>
// and its range, or says that the chosen value is not implemented yet.
absl::StatusOr<EntmaxKvConfig> ParseEntmaxKvConfig(const StrategyConfig& config, int64_t n_layers);

}  // namespace kvstream
