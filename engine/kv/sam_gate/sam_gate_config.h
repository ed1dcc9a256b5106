// SAM-Gate knobs (design/strategies/sam_gate.md §5, with the decisions of
// strategies/README.md): every SamGateConfig proto field, its default and
// range, plus the regime rule (§4 step 3, C12) and the per-regime settings.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/kv/strategy_config.h"
#include "kernels/sam_gate/sam_ring.h"

namespace kvstream {

enum class SamRegime : int32_t { kFlat = 0, kTransition = 1, kObstructed = 2 };
const char* SamRegimeName(SamRegime r);  // "FLAT", "TRANSITION", "OBSTRUCTED"

// Where a request's f thresholds came from: the seed placeholders (§5), the
// model's calibrated profile (C14, sam_gate_profile.h), or the request.
enum class SamThresholdSource : int32_t { kSeed = 0, kProfile = 1, kRequest = 2 };

// The defaults of f_flat_max / f_obs_min for one model.
struct SamThresholdDefaults {
  double f_flat_max = 1e-2;  // seed
  double f_obs_min = 50.0;   // seed
  SamThresholdSource source = SamThresholdSource::kSeed;
};

// What a regime applies to one layer (§4 step 3).
struct SamRegimeSettings {
  int bits = 16;
  double heads_fraction = 1.0;  // phi
  int window = 128;             // W
};

struct SamGateConfig {
  float tau = 0.05f;
  int flat_bits = 4;
  int trans_bits = 8;
  int obs_bits = 16;
  float flat_heads = 0.5f;
  float trans_heads = 0.75f;
  float f_flat_max = 1e-2f;
  float f_obs_min = 50.0f;
  int max_ctx_flat = 64;
  int max_ctx_trans = 128;
  int max_ctx_obs = 128;
  int num_probes = 8;
  int probe_window = 64;
  uint64_t probe_seed = 0;
  int num_sink_tokens = 0;
  int quant_group_size = 32;
  bool packed_storage = true;
  SamDroppedHeadMode dropped_head_mode = SamDroppedHeadMode::kSelf;
  bool calibrate = false;
  // Where f_flat_max / f_obs_min came from (reported, §8 + C14).
  SamThresholdSource thresholds_from = SamThresholdSource::kSeed;

  // C12: FLAT if f < f_flat_max, TRANSITION if f < f_obs_min, else (or NaN)
  // OBSTRUCTED.
  SamRegime Classify(double f) const;
  SamRegimeSettings Settings(SamRegime r) const;
  // Ring storage bits of a regime: `bits` when packed, 16 in compat mode.
  int StorageBits(SamRegime r) const { return packed_storage ? Settings(r).bits : 16; }
  // compat mode: the width prefill rows are fake-quantized at (0 = none).
  int FakeQuantBits(SamRegime r) const {
    return packed_storage || Settings(r).bits >= 16 ? 0 : Settings(r).bits;
  }
};

// What this version of the engine does not implement yet: INVALID_ARGUMENT
// naming the knob. Every knob of §5 is implemented now (OK always); kept as
// the hook for future refusals.
absl::Status SamGateCheckImplemented(const SamGateConfig& c);

// Parses and validates `config` (strategy "sam_gate") for a model with head
// dim `head_dim`; INVALID_ARGUMENT names kv_compression.sam_gate.<knob> and
// its range. Unset thresholds take `thresholds` (the model's profile).
absl::StatusOr<SamGateConfig> ParseSamGateConfig(const StrategyConfig& config, int64_t head_dim,
                                                 const SamThresholdDefaults& thresholds = {});

}  // namespace kvstream
