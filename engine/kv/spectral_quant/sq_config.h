// SpectralQuant knobs (design/strategies/spectral_quant.md §5): every
// SpectralQuantConfig proto field with its default and range. Errors are
// INVALID_ARGUMENT naming kv_compression.spectral_quant.<field> and its range
// (strategies/README.md "Bad knobs"); an unknown calibration profile is
// INVALID_ARGUMENT too, naming the profiles the server loaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/strategy_config.h"

namespace kvstream {

inline constexpr char kSqName[] = "spectral_quant";
inline constexpr int32_t kSqMaxSinkTokens = 64;

struct SpectralQuantConfig {
  int32_t total_bits = 3;                  // 1..5 (keeps every width <= 8)
  bool use_water_fill = true;
  bool use_qjl = false;
  double d_eff_variance = 0.90;            // tau, (0, 1]
  std::optional<int32_t> noise_bits;       // 1..8; set = noise mode (§4.2.2)
  std::optional<int32_t> value_noise_bits; // 1..8; only read in noise mode
  std::string calibration_profile;         // "" = the model's "default" profile
  bool compress_decode_tokens = true;      // false = mode (b), dense tail (§6.6)
  // [kvstream choices, issue 11; not in the seed]
  // center_keys / center_values: code k - mu_k / v - mu_v (per (layer, KV
  // head) calibrated means) in the eigenbasis of the centred covariance.
  // Exact for attention: q.(k - mu_k) moves every logit of a query by the
  // same q.mu_k, which the softmax cancels (the dense segment is centred
  // too), and mu_v is added back to the output because the weights sum to 1.
  // false = the spec's uncentred statistics (§6.1). Keys stay uncentred by
  // default: post-RoPE the key mean turns with position, so one calibrated
  // mean leaves a position-dependent offset that the centred (narrower)
  // codebooks clip (measured at noise_bits=3, no sinks: ppl ratio 1.31 ->
  // 1.67; 4 sinks: 1.18 -> 1.22). Values (no RoPE) gain with sinks kept
  // exact (1 sink: 1.17 -> 1.15) but lose without (1.31 -> 1.51): the sink's
  // value is far from the mean, so the two go together.
  bool center_keys = false;
  bool center_values = true;
  // num_sink_tokens: the first S positions (attention sinks) are kept exact
  // (dense, K2's dense segment) and never coded; their bytes are counted.
  // Measured on SmolLM2-135M (3 bits, layer b_low rule, noise_bits=3-like
  // widths): S=0 1.31, S=1 1.15-1.17, S=4 1.18; one sink (the first token
  // carries the sink's 30-60% key error) is enough and costs least.
  int32_t num_sink_tokens = 1;             // 0..64; 0 = the spec (every token coded)

  // The profile this config selects ("" -> "default").
  std::string ProfileName() const { return calibration_profile.empty() ? "default" : calibration_profile; }
  // The knobs a plan depends on (§6.4 LRU key; compress_decode_tokens and
  // num_sink_tokens do not change the plan). value_noise_bits is dropped in
  // legacy mode, where it is ignored (§4.2.2), so equal plans share one key.
  std::tuple<std::string, int32_t, bool, bool, double, int32_t, int32_t, bool, bool> PlanKey() const {
    return {ProfileName(),          total_bits, use_water_fill, use_qjl, d_eff_variance,
            noise_bits.value_or(0), noise_bits ? value_noise_bits.value_or(0) : 0, center_keys, center_values};
  }
};

// Parses `config` (strategy "spectral_quant"). `profiles` lists the loaded
// profile names; a calibration_profile not among them is INVALID_ARGUMENT.
absl::StatusOr<SpectralQuantConfig> ParseSpectralQuantConfig(const StrategyConfig& config,
                                                             const std::vector<std::string>& profiles);

}  // namespace kvstream
