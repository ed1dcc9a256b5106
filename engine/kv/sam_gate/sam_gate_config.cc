#include "engine/kv/sam_gate/sam_gate_config.h"

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "engine/kv/knob_reader.h"

namespace kvstream {

const char* SamRegimeName(SamRegime r) {
  switch (r) {
    case SamRegime::kFlat: return "FLAT";
    case SamRegime::kTransition: return "TRANSITION";
    case SamRegime::kObstructed: return "OBSTRUCTED";
  }
  return "OBSTRUCTED";
}

SamRegime SamGateConfig::Classify(double f) const {
  if (std::isnan(f)) return SamRegime::kObstructed;
  if (f < static_cast<double>(f_flat_max)) return SamRegime::kFlat;
  if (f < static_cast<double>(f_obs_min)) return SamRegime::kTransition;
  return SamRegime::kObstructed;
}

SamRegimeSettings SamGateConfig::Settings(SamRegime r) const {
  switch (r) {
    case SamRegime::kFlat: return {flat_bits, flat_heads, max_ctx_flat};
    case SamRegime::kTransition: return {trans_bits, trans_heads, max_ctx_trans};
    case SamRegime::kObstructed: break;
  }
  return {obs_bits, 1.0, max_ctx_obs};
}

absl::StatusOr<SamGateConfig> ParseSamGateConfig(const StrategyConfig& config, int64_t head_dim,
                                                 const SamThresholdDefaults& thresholds) {
  KnobReader r(config, "sam_gate");
  SamGateConfig c;
  c.tau = static_cast<float>(r.Real("tau", 0.05, 0.0, false, 2.0, false));
  c.flat_bits = static_cast<int>(r.OneOf("flat_bits", 4, {4, 8, 16}));
  c.trans_bits = static_cast<int>(r.OneOf("trans_bits", 8, {4, 8, 16}));
  c.obs_bits = static_cast<int>(r.OneOf("obs_bits", 16, {4, 8, 16}));
  c.flat_heads = static_cast<float>(r.Real("flat_heads", 0.5, 0.0, true, 1.0, false));
  c.trans_heads = static_cast<float>(r.Real("trans_heads", 0.75, 0.0, true, 1.0, false));
  c.f_flat_max = static_cast<float>(r.Real("f_flat_max", thresholds.f_flat_max, 0.0, false, FLT_MAX, false));
  c.f_obs_min = static_cast<float>(r.Real("f_obs_min", thresholds.f_obs_min, 0.0, false, FLT_MAX, false));
  c.thresholds_from = config.Has("f_flat_max") || config.Has("f_obs_min") ? SamThresholdSource::kRequest
                                                                           : thresholds.source;
  c.max_ctx_flat = static_cast<int>(r.Int("max_ctx_flat", 64, 1, 32768));
  c.max_ctx_trans = static_cast<int>(r.Int("max_ctx_trans", 128, 1, 32768));
  c.max_ctx_obs = static_cast<int>(r.Int("max_ctx_obs", 128, 1, 32768));
  c.num_probes = static_cast<int>(r.Int("num_probes", 8, 0, 64));
  c.probe_window = static_cast<int>(r.Int("probe_window", 64, 8, 512));
  c.probe_seed = static_cast<uint64_t>(r.Int("probe_seed", 0, 0, INT64_MAX));
  c.num_sink_tokens = static_cast<int>(r.Int("num_sink_tokens", 0, 0, 64));
  c.quant_group_size = static_cast<int>(r.OneOf("quant_group_size", 32, {16, 32, 64, 128}));
  c.packed_storage = r.Bool("packed_storage", true);
  const std::string mode = r.Enum("dropped_head_mode", "SELF", "SAM_GATE_DROPPED_HEAD_MODE_", {"SELF", "ZERO"});
  c.dropped_head_mode = mode == "ZERO" ? SamDroppedHeadMode::kZero : SamDroppedHeadMode::kSelf;
  c.calibrate = r.Bool("calibrate", false);

  // Cross-field rules (§5, C12).
  if (c.f_flat_max > c.f_obs_min) {
    r.Fail(absl::StrCat(r.Field("f_flat_max"), " must be <= f_obs_min (", c.f_obs_min, "); got ", c.f_flat_max));
  }
  if (head_dim % c.quant_group_size != 0) {
    r.Fail(absl::StrCat(r.Field("quant_group_size"), " must divide the head dim ", head_dim, " (got ",
                        c.quant_group_size, ")"));
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return c;
}

absl::Status SamGateCheckImplemented(const SamGateConfig&) { return absl::OkStatus(); }

}  // namespace kvstream
