#include "engine/kv/sam_gate/sam_gate_strategy.h"

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "engine/status_macros.h"

namespace kvstream {

SamGateStrategy::SamGateStrategy(const KvGeometry& g, std::optional<std::vector<std::string>> profile_dirs)
    : geometry_(g) {
  const std::vector<std::string> dirs = profile_dirs ? *profile_dirs : SamGateProfileDirs(g.model_path);
  absl::StatusOr<std::optional<SamGateProfile>> p = FindSamGateProfile(g.model_path, dirs);
  if (!p.ok()) {
    profile_status_ = absl::FailedPreconditionError(p.status().message());
    spdlog::error("sam_gate disabled until fixed: {}", std::string(profile_status_.message()));
    return;
  }
  profile_ = *std::move(p);
  if (profile_) {
    thresholds_ = {profile_->f_flat_max, profile_->f_obs_min, SamThresholdSource::kProfile};
    spdlog::info("sam_gate: thresholds f_flat_max={} f_obs_min={} from {}", profile_->f_flat_max,
                 profile_->f_obs_min, profile_->path);
  } else if (!g.model_path.empty()) {
    spdlog::info("sam_gate: no profile {} found; seed thresholds (placeholders, C14)",
                 SamGateProfileFileName(g.model_path));
  }
}

absl::Status SamGateStrategy::Validate(const StrategyConfig& config) const {
  KV_RETURN_IF_ERROR(profile_status_);
  KV_ASSIGN_OR_RETURN(SamGateConfig c, ParseSamGateConfig(config, geometry_.head_dim, thresholds_));
  if (geometry_.head_dim != 64 && geometry_.head_dim != 128) {
    return absl::InvalidArgumentError(absl::StrCat("kv_compression.sam_gate is not available for this model's head dim ",
                                                   geometry_.head_dim, " (SAM-Gate kernels take 64 or 128)"));
  }
  if (geometry_.n_kv_heads <= 0 || geometry_.n_heads % geometry_.n_kv_heads != 0) {
    return absl::InvalidArgumentError("kv_compression.sam_gate needs n_heads to be a multiple of n_kv_heads");
  }
  return SamGateCheckImplemented(c);
}

absl::StatusOr<std::unique_ptr<SequenceCache>> SamGateStrategy::Open(const StrategyConfig& config) {
  KV_RETURN_IF_ERROR(Validate(config));
  KV_ASSIGN_OR_RETURN(SamGateConfig c, ParseSamGateConfig(config, geometry_.head_dim, thresholds_));
  return std::make_unique<SamGateSequenceCache>(c, geometry_, profile_ ? &*profile_ : nullptr);
}

int64_t SamGateStrategy::PredictBytes(const StrategyConfig& config, int64_t prompt_tokens, int64_t) const {
  absl::StatusOr<SamGateConfig> c = ParseSamGateConfig(config, geometry_.head_dim, thresholds_);
  if (!c.ok()) return 0;  // Validate runs first and refuses it
  const int64_t staging = 2 * geometry_.n_layers * geometry_.n_kv_heads * geometry_.head_dim * prompt_tokens *
                          static_cast<int64_t>(c10::elementSize(geometry_.dtype));
  int64_t ring = 0;
  const std::vector<double> zeros(geometry_.n_kv_heads, 0.0);
  for (SamRegime r : {SamRegime::kFlat, SamRegime::kTransition, SamRegime::kObstructed}) {
    SamLayerPlan p;
    p.regime = r;
    p.bits = c->StorageBits(r);
    p.window = c->Settings(r).window;
    p.sinks = c->num_sink_tokens;
    p.kept = SamSelectGroups(c->Settings(r).heads_fraction, zeros);
    ring = std::max(ring, SamLayerRingBytes(p, geometry_.head_dim, geometry_.n_heads, c->quant_group_size));
  }
  return staging + geometry_.n_layers * ring;
}

}  // namespace kvstream
