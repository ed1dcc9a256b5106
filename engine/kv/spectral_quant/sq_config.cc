#include "engine/kv/spectral_quant/sq_config.h"

#include <algorithm>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/kv/knob_reader.h"

namespace kvstream {

absl::StatusOr<SpectralQuantConfig> ParseSpectralQuantConfig(const StrategyConfig& config,
                                                             const std::vector<std::string>& profiles) {
  // NOTE(sq): KnobReader has no string reader (its Enum upper-cases), so the
  // one string knob is read here and the rest go through a copy without it;
  // KnobReader::Finish still refuses every unknown knob.
  StrategyConfig numeric = config;
  const auto prof_it = numeric.knobs.find("calibration_profile");
  std::optional<KnobValue> profile_knob;
  if (prof_it != numeric.knobs.end()) {
    profile_knob = prof_it->second;
    numeric.knobs.erase(prof_it);
  }
  KnobReader r(numeric, kSqName);
  SpectralQuantConfig c;
  c.total_bits = static_cast<int32_t>(r.Int("total_bits", 3, 1, 5));
  c.use_water_fill = r.Bool("use_water_fill", true);
  c.use_qjl = r.Bool("use_qjl", false);
  c.d_eff_variance = r.Real("d_eff_variance", 0.90, 0.0, true, 1.0, false);
  if (numeric.Has("noise_bits")) c.noise_bits = static_cast<int32_t>(r.Int("noise_bits", 1, 1, 8));
  if (numeric.Has("value_noise_bits")) {
    c.value_noise_bits = static_cast<int32_t>(r.Int("value_noise_bits", 1, 1, 8));
  }
  c.compress_decode_tokens = r.Bool("compress_decode_tokens", true);
  c.center_keys = r.Bool("center_keys", false);
  c.center_values = r.Bool("center_values", true);
  c.num_sink_tokens = static_cast<int32_t>(r.Int("num_sink_tokens", 1, 0, kSqMaxSinkTokens));
  c.rd_allocation = r.Bool("rd_allocation", true);
  if (numeric.Has("num_recent_tokens")) {
    c.num_recent_tokens = static_cast<int32_t>(r.Int("num_recent_tokens", kSqRecentMin, 0, kSqMaxRecentTokens));
  }
  if (profile_knob) {
    const auto* s = std::get_if<std::string>(&*profile_knob);
    if (s == nullptr) {
      r.Fail(absl::StrCat(r.Field("calibration_profile"), " must be a profile name string"));
    } else {
      c.calibration_profile = *s;
    }
  }
  if (std::find(profiles.begin(), profiles.end(), c.ProfileName()) == profiles.end()) {
    r.Fail(absl::StrCat(r.Field("calibration_profile"), " must name a loaded profile (",
                        profiles.empty() ? "none loaded" : absl::StrJoin(profiles, ", "), "); got '",
                        c.calibration_profile, "'", c.calibration_profile.empty() ? " = default" : ""));
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return c;
}

}  // namespace kvstream
