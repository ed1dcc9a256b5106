// SpectralQuant knobs (design/strategies/spectral_quant.md §5): every
// SpectralQuantConfig proto field with its default and range. Errors are
// INVALID_ARGUMENT naming kv_compression.spectral_quant.<field> and its range
// (strategies/README.md "Bad knobs"); an unknown calibration profile is
// INVALID_ARGUMENT too, naming the profiles the server loaded.
#pragma once

#include <algorithm>
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
inline constexpr int32_t kSqMaxRecentTokens = 1024;
// The default recent window, max(kSqRecentMin, tokens / kSqRecentDivisor) (num_recent_tokens).
inline constexpr int64_t kSqRecentMin = 32;
inline constexpr int64_t kSqRecentDivisor = 48;

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
  // rd_allocation (legacy mode with water-fill, i.e. noise_bits unset): the
  // widths of all D eigen-dimensions come from one greedy rate-distortion
  // fill with the unit Lloyd-Max MSE table M_w (sq_tables.h): start every
  // w_i at 1 and give the next bit to argmax lambda_i (M_{w_i} - M_{w_i+1})
  // (w_i < 8, ties to the lowest i) until the type's budget is spent: K
  // total_bits * D bits, V total_bits * D + D/2 bits (3 and 3.5 bits per dim
  // at the defaults: 6 + 7 words at D = 64, 12 + 14 at D = 128). Every dim's
  // scale is sqrt(max(lambda_i, 1e-8)). The spec's split (d_eff semantic
  // dims water-filled with 4^-w, the rest at b_low with a 1/sqrt(D) sigma
  // floor) spends the same bits on the tail whatever its energy and pads V to
  // the widest head. SmolLM2-135M, a Python mirror of this code, 1024 tokens
  // of Northanger Abbey all coded, 1 sink, teacher-forced ppl ratio: spec
  // widths (K 6 + V 8 words) 1.224, rd (K 7 + V 7) 1.097; every dim at 8 bits
  // 0.998 (the codes have no numerics bug; the spec's "noise_bits 8" still
  // codes the semantic dims, most of the energy, at 5-6 bits).
  // d_eff (and b_low/b_high) are still computed and reported; QJL still
  // sketches the first d_eff dims. false = the spec's widths.
  bool rd_allocation = true;
  // num_recent_tokens (compress_decode_tokens=true only): the last R
  // positions are held exact (bf16, K2's dense segment after the records) and
  // coded only when they leave the window, oldest first, so records keep
  // position order (sinks, records, window). The spec's mode (a) codes each
  // new token before attending; a small model puts much of its attention on
  // the last few tokens (KIVI keeps such a residual window for the same
  // reason). SmolLM2-135M mirror, rd widths K 6 + V 7 words, 2048 tokens:
  // R 32 1.041, R 64 1.030 (at 1024 tokens, K 7 + V 7: R 0 1.075, R 16
  // 1.032, R 64 1.019). Engine, sq_perplexity_test (640 + 96 tokens): 1.147
  // before both choices, 1.031 with them. 0 = the spec. In mode (b)
  // generated tokens are dense anyway and R is not used.
  // NOTE(kvstream): unset (the default) sizes the window from the request:
  // R = max(32, T / 48) for T = prompt + max_new tokens (kSqRecentMin,
  // kSqRecentDivisor; 32 when T is unknown), i.e. about 2.1% of the tokens,
  // which keeps the defaults at ~4.55x at every length (records 52 B per
  // token and head at 3 + 3.5 bits per dim vs 256 B dense bf16; T = 2048:
  // R 42, 4096: 85, 8000: 166). A fixed R = 32 lost quality with context
  // (GPU eval, 4 samples: ppl/dense 1.037 / 1.060 / 1.078 at 2K / 4K / 8K)
  // while its ratio rose (4.63 / 4.77 / 4.84x). A Python mirror of this code
  // (teacher-forced, last 512 tokens of two 4096-token Austen windows, the
  // prompt held exact; issue 11): R 32 1.071 at 4.77x, R 96 1.046 at 4.51x.
  // Engine, CPU server, `kvstream eval --tasks=ppl --contexts=4096
  // --samples=2 --seed=7` (2 x 128 forced tokens): this default (R 85) 1.035
  // at 4.54x (fp32 sink on CPU), R 32 1.047 at 4.77x, in one run.
  // Tried at R 32 and lost or tied: K widths weighted by the queries (the RD
  // gain times E[(q.v_i)^2] in the K eigenbasis, calibration queries) 1.080,
  // the same with the square root of that weight 1.080, 4 sinks 1.072,
  // K 3.5 + V 3 bits per dim (K 7 + V 6 words) 1.072.
  std::optional<int32_t> num_recent_tokens;  // 0..1024; unset = max(32, T / 48)

  // The profile this config selects ("" -> "default").
  std::string ProfileName() const { return calibration_profile.empty() ? "default" : calibration_profile; }
  // The knobs a plan depends on (§6.4 LRU key; compress_decode_tokens and
  // num_sink_tokens / num_recent_tokens do not change the plan). value_noise_bits is dropped in
  // legacy mode, where it is ignored (§4.2.2), so equal plans share one key.
  std::tuple<std::string, int32_t, bool, bool, double, int32_t, int32_t, bool, bool, bool> PlanKey() const {
    return {ProfileName(),          total_bits, use_water_fill, use_qjl, d_eff_variance,
            noise_bits.value_or(0), noise_bits ? value_noise_bits.value_or(0) : 0, center_keys, center_values,
            RdAllocation()};
  }
  // Whether plans use rd_allocation (legacy mode with water-fill only).
  bool RdAllocation() const { return rd_allocation && use_water_fill && !noise_bits; }
  // The recent window that applies (mode a only) to a request of
  // `max_tokens` tokens (prompt + max_new; 0 = unknown).
  int64_t RecentTokens(int64_t max_tokens) const {
    if (!compress_decode_tokens) return 0;
    if (num_recent_tokens) return *num_recent_tokens;
    // At most the knob's own range (from T ~ 49K tokens on).
    return std::min<int64_t>(kSqMaxRecentTokens, std::max<int64_t>(kSqRecentMin, max_tokens / kSqRecentDivisor));
  }
};

// Parses `config` (strategy "spectral_quant"). `profiles` lists the loaded
// profile names; a calibration_profile not among them is INVALID_ARGUMENT.
absl::StatusOr<SpectralQuantConfig> ParseSpectralQuantConfig(const StrategyConfig& config,
                                                             const std::vector<std::string>& profiles);

}  // namespace kvstream
