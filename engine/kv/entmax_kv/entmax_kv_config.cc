#include "engine/kv/entmax_kv/entmax_kv_config.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/kv/knob_reader.h"

namespace kvstream {

absl::StatusOr<EntmaxKvConfig> ParseEntmaxKvConfig(const StrategyConfig& config, int64_t n_layers) {
  KnobReader r(config, "entmax_kv");
  EntmaxKvConfig c;
  const std::string sel = r.Enum("selector", "TOPK", "ENTMAX_KV_SELECTOR_", {"TOPK", "GAUSSIAN"});
  c.selector = sel == "GAUSSIAN" ? EntmaxKvConfig::Selector::kGaussian : EntmaxKvConfig::Selector::kTopk;
  const double alpha = r.Real("alpha", 1.0, 1.0, false, 2.0, false);
  if (alpha != 1.0 && alpha != 1.5 && alpha != 2.0) {
    r.Fail(absl::StrCat(r.Field("alpha"), " must be one of 1.0, 1.5, 2.0 (got ", alpha, ")"));
  }
  c.alpha = static_cast<float>(alpha);
  const bool softmax = c.alpha == 1.0f;
  c.page_size = static_cast<int>(r.OneOf("page_size", 16, {8, 16, 32, 64}));
  c.token_budget = static_cast<int>(r.Int("token_budget", 2048, c.page_size, int64_t{1} << 30));
  if (c.token_budget % c.page_size != 0) {
    r.Fail(absl::StrCat(r.Field("token_budget"), " must be a multiple of page_size (", c.page_size, "); got ",
                        c.token_budget));
  }
  c.niter = static_cast<int>(r.Int("niter", c.alpha == 2.0f ? 4 : 3, 1, 16));
  const std::string tau =
      r.Enum("tau_mode", "CORRECTED", "ENTMAX_KV_TAU_MODE_", {"EXACT", "FIXED", "CORRECTED"});
  c.tau_mode = tau == "EXACT"   ? EntmaxKvConfig::TauMode::kExact
               : tau == "FIXED" ? EntmaxKvConfig::TauMode::kFixed
                                : EntmaxKvConfig::TauMode::kCorrected;
  c.tau_correction_iters = static_cast<int>(r.Int("tau_correction_iters", 3, 0, 8));
  c.clamp_tau = r.Bool("clamp_tau", true);
  c.safety_margin_z = static_cast<float>(r.Real("safety_margin_z", 0.0, 0.0, false, 5.0, false));
  c.max_quantile = static_cast<float>(r.Real("max_quantile", 0.995, 0.5, true, 1.0, true));
  c.threshold_excess_margin_fraction =
      static_cast<float>(r.Real("threshold_excess_margin_fraction", 0.1, 0.0, false, 1.0, false));
  c.tau_clamp_page_max_quantile =
      static_cast<float>(r.Real("tau_clamp_page_max_quantile", 0.5, 0.0, true, 1.0, true));
  c.min_context = r.Int("min_context", 0, 0, INT32_MAX);
  c.sink_pages = static_cast<int>(r.Int("sink_pages", softmax ? 1 : 0, 0, 8));
  c.dense_layers = static_cast<int>(r.Int("dense_layers", softmax ? std::min<int64_t>(2, n_layers) : 0, 0, n_layers));
  const std::string gqa =
      r.Enum("gqa_selection", "SHARED_KV", "ENTMAX_KV_GQA_SELECTION_", {"SHARED_KV", "PER_QUERY_HEAD"});
  c.gqa_selection = gqa == "PER_QUERY_HEAD" ? EntmaxKvConfig::GqaSelection::kPerQueryHead
                                            : EntmaxKvConfig::GqaSelection::kSharedKv;
  c.normalize_output = r.Bool("normalize_output", true);
  c.max_selected_fraction = static_cast<float>(r.Real("max_selected_fraction", 1.0, 0.0, true, 1.0, false));

  // Spec §6: GAUSSIAN needs alpha > 1 (no exact zeros with softmax).
  if (c.selector == EntmaxKvConfig::Selector::kGaussian && softmax) {
    r.Fail(absl::StrCat(r.Field("selector"), " GAUSSIAN needs alpha 1.5 or 2.0 (got alpha 1.0)"));
  }
  // Not implemented in this version (engine/kv/entmax_kv/ README of the header).
  if (c.selector == EntmaxKvConfig::Selector::kGaussian) {
    r.Fail(absl::StrCat(r.Field("selector"), " GAUSSIAN is not implemented yet in this server (use TOPK)"));
  }
  if (!softmax) {
    r.Fail(absl::StrCat(r.Field("alpha"), " ", c.alpha,
                        " is not implemented yet in this server (only 1.0; alpha > 1 will also need "
                        "--allow-entmax-attention)"));
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return c;
}

}  // namespace kvstream
