#include "engine/kv/spectral_quant/sq_strategy.h"

#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/kv/spectral_quant/sq_kernels.h"
#include "engine/status_macros.h"

namespace kvstream {

int64_t SqRecordBytesPerToken(const SqLayerPlan& lp, int64_t n_kv_heads, int qjl_words) {
  int64_t b = static_cast<int64_t>(lp.words_k + lp.words_v) * 4;
  if (qjl_words > 0) b += 2 + 4 * qjl_words;  // r_norm fp16 + sign words (§9 test 7)
  return b * n_kv_heads;
}

SpectralQuantStrategy::SpectralQuantStrategy(const KvGeometry& g, std::vector<std::shared_ptr<const SqProfile>> profiles)
    : geometry_(g) {
  for (auto& p : profiles) {
    if (g.ShardsKvHeads()) {
      rank_profiles_[p->name] =
          std::make_shared<const SqProfile>(SqSliceProfile(*p, g.tp_kv_head_begin, g.n_kv_heads));
    }
    profiles_[p->name] = std::move(p);
  }
}

absl::StatusOr<std::unique_ptr<SpectralQuantStrategy>> SpectralQuantStrategy::Create(const KvGeometry& g) {
  std::vector<std::shared_ptr<const SqProfile>> profiles;
  if (!g.model_path.empty() && SqSupportsHeadDim(static_cast<int>(g.head_dim))) {
    KvGeometry whole = g;  // profiles are the model's: every KV head
    whole.n_kv_heads = g.ModelKvHeads();
    // A tensor-parallel rank only loads: calibrating would put the whole
    // model on the rank's GPU beside its shard and KV pool (and once per
    // rank). Without a profile, spectral_quant requests are refused naming
    // the fix (a TP=1 start or `kvstream calibrate` writes one).
    KV_ASSIGN_OR_RETURN(profiles, SqLoadProfiles(whole, /*calibrate=*/g.tp_size == 1));
    if (profiles.empty() && g.tp_size > 1) {
      spdlog::warn("spectral_quant: no calibration profile for {} (tensor-parallel ranks do not calibrate: start "
                   "once at --tensor-parallel=1 or run `kvstream calibrate`); spectral_quant requests are refused",
                   g.model_path);
    }
  }
  return std::make_unique<SpectralQuantStrategy>(g, std::move(profiles));
}

std::vector<std::string> SpectralQuantStrategy::ProfileNames() const {
  if (synthetic()) return {"default"};
  std::vector<std::string> names;
  for (const auto& [name, _] : profiles_) names.push_back(name);
  return names;
}

const SqProfile* SpectralQuantStrategy::profile(const std::string& name) const {
  auto it = profiles_.find(name);
  return it == profiles_.end() ? nullptr : it->second.get();
}

absl::StatusOr<SpectralQuantConfig> SpectralQuantStrategy::Parse(const StrategyConfig& config) const {
  KV_ASSIGN_OR_RETURN(SpectralQuantConfig c, ParseSpectralQuantConfig(config, ProfileNames()));
  if (!SqSupportsHeadDim(static_cast<int>(geometry_.head_dim))) {
    return absl::InvalidArgumentError(absl::StrCat("kv_compression.spectral_quant is not available for this model's head dim ",
                                                   geometry_.head_dim, " (SpectralQuant kernels take 64 or 128)"));
  }
  if (geometry_.n_kv_heads <= 0 || geometry_.n_heads % geometry_.n_kv_heads != 0) {
    return absl::InvalidArgumentError("kv_compression.spectral_quant needs n_heads to be a multiple of n_kv_heads");
  }
  return c;
}

absl::Status SpectralQuantStrategy::Validate(const StrategyConfig& config) const { return Parse(config).status(); }

std::shared_ptr<const SqDevicePlan> SpectralQuantStrategy::DevicePlan(const SpectralQuantConfig& c, bool* hit) {
  const SqProfile& p = *profiles_.at(c.ProfileName());
  std::shared_ptr<const SqPlan> plan = plans_.Get(c, p, hit);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = device_plans_.begin(); it != device_plans_.end(); ++it) {
    if (it->first == plan) {
      device_plans_.splice(device_plans_.begin(), device_plans_, it);
      return it->second;
    }
  }
  // Device copies follow the host LRU: one per live host plan at most.
  std::shared_ptr<const SqDevicePlan> d =
      geometry_.ShardsKvHeads()
          ? SqBuildDevicePlan(SqSlicePlan(*plan, geometry_.tp_kv_head_begin, geometry_.n_kv_heads),
                              *rank_profiles_.at(c.ProfileName()), geometry_.device)
          : SqBuildDevicePlan(plan, p, geometry_.device);
  device_plans_.emplace_front(plan, d);
  while (device_plans_.size() > 16) device_plans_.pop_back();
  return d;
}

absl::StatusOr<std::unique_ptr<SequenceCache>> SpectralQuantStrategy::Open(const StrategyConfig& config) {
  KV_ASSIGN_OR_RETURN(SpectralQuantConfig c, Parse(config));
  if (synthetic()) {
    return std::make_unique<SpectralQuantSequenceCache>(c, geometry_, nullptr, nullptr, false, config.max_tokens);
  }
  try {
    bool hit = false;
    std::shared_ptr<const SqDevicePlan> d = DevicePlan(c, &hit);
    const auto& profiles = geometry_.ShardsKvHeads() ? rank_profiles_ : profiles_;
    return std::make_unique<SpectralQuantSequenceCache>(c, geometry_, d, profiles.at(c.ProfileName()), hit,
                                                        config.max_tokens);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("spectral_quant plan upload: ", e.what_without_backtrace()));
  }
}

int64_t SpectralQuantStrategy::PredictBytes(const StrategyConfig& config, int64_t prompt_tokens,
                                            int64_t max_new_tokens) const {
  absl::StatusOr<SpectralQuantConfig> c = Parse(config);
  if (!c.ok()) return 0;  // Validate runs first and refuses it
  const int64_t total = prompt_tokens + max_new_tokens, H = geometry_.n_kv_heads, D = geometry_.head_dim;
  int64_t per_token = 0;
  if (synthetic()) {
    // Unknown spectrum: the widest records any plan of these knobs can give
    // (every width 8 is above any budget, so 8 bits per dim bounds it), plus
    // this sequence's own plan arrays and bases.
    const int words = SqRecordWords(static_cast<int>(D) * kSqMaxWidth);
    per_token = geometry_.n_layers * H * (2 * words * 4 + (c->use_qjl ? 2 + 4 * SqSignWords(static_cast<int>(D)) : 0));
  } else {
    const SqProfile& p = *profiles_.at(c->ProfileName());
    std::shared_ptr<const SqPlan> plan = plans_.Get(*c, p);
    for (const SqLayerPlan& lp : plan->layers) {
      per_token += SqRecordBytesPerToken(lp, H, c->use_qjl ? SqSignWords(lp.k_max_d_eff) : 0);
    }
  }
  // Sinks (sq_config.h) are held exact in K2's dense dtype, never coded; so
  // is the recent window (mode a, bf16, min(R, the rest) slots).
  const int64_t sinks = std::min<int64_t>(c->num_sink_tokens, total);
  const int64_t recent = std::min<int64_t>(c->RecentTokens(total), total - sinks);
  int64_t bytes = per_token * (total - sinks - recent);
  if (recent > 0) bytes += geometry_.n_layers * 2 * recent * H * D * static_cast<int64_t>(c10::elementSize(at::kBFloat16));
  if (sinks > 0) {
    bytes += geometry_.n_layers * 2 * c->num_sink_tokens * H * D *
             static_cast<int64_t>(c10::elementSize(SqDenseDtype(geometry_)));
  }
  if (!c->compress_decode_tokens) {
    bytes += geometry_.n_layers * 2 * H * D * max_new_tokens * static_cast<int64_t>(c10::elementSize(geometry_.dtype));
  }
  if (synthetic()) {
    // Own plan per layer: widths u8, scales f32, offsets u16 (x2 types), d_eff
    // i32 (x2), bases f32 (x2), S_sem + S' with QJL.
    const int64_t per_layer = 2 * H * D * (1 + 4 + 2) + 2 * H * 4 + 2 * H * D * D * 4 +
                              (c->use_qjl ? 2 * H * D * D * 4 : 0);
    bytes += geometry_.n_layers * per_layer;
  }
  return bytes;
}

}  // namespace kvstream
