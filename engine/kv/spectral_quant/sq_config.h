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

struct SpectralQuantConfig {
  int32_t total_bits = 3;                  // 1..5 (keeps every width <= 8)
  bool use_water_fill = true;
  bool use_qjl = false;
  double d_eff_variance = 0.90;            // tau, (0, 1]
  std::optional<int32_t> noise_bits;       // 1..8; set = noise mode (§4.2.2)
  std::optional<int32_t> value_noise_bits; // 1..8; only read in noise mode
  std::string calibration_profile;         // "" = the model's "default" profile
  bool compress_decode_tokens = true;      // false = mode (b), dense tail (§6.6)

  // The profile this config selects ("" -> "default").
  std::string ProfileName() const { return calibration_profile.empty() ? "default" : calibration_profile; }
  // The knobs a plan depends on (§6.4 LRU key; compress_decode_tokens does
  // not change the plan). value_noise_bits is dropped in legacy mode, where
  // it is ignored (§4.2.2), so equal plans share one key.
  std::tuple<std::string, int32_t, bool, bool, double, int32_t, int32_t> PlanKey() const {
    return {ProfileName(), total_bits,   use_water_fill, use_qjl, d_eff_variance,
            noise_bits.value_or(0), noise_bits ? value_noise_bits.value_or(0) : 0};
  }
};

// Parses `config` (strategy "spectral_quant"). `profiles` lists the loaded
// profile names; a calibration_profile not among them is INVALID_ARGUMENT.
absl::StatusOr<SpectralQuantConfig> ParseSpectralQuantConfig(const StrategyConfig& config,
                                                             const std::vector<std::string>& profiles);

}  // namespace kvstream
