// Turns one row of logits into the next token: repetition penalty (CTRL,
// Keskar et al. 2019, as Hugging Face applies it), temperature, top-k,
// top-p (nucleus, Holtzman et al. 2019), then a draw from a per-request
// generator, so the same seed gives the same tokens.
#pragma once

#include <limits>

#include <cstdint>
#include <random>
#include <unordered_set>
#include <vector>

#include "absl/types/span.h"
#include "engine/sampling/sampling_params.h"

namespace kvstream {

struct TopLogprobEntry {
  int32_t token_id = 0;
  float logprob = 0.0f;
};

struct SampleResult {
  int32_t token_id = 0;
  float logprob = 0.0f;                 // log-softmax of the model's raw logits
  std::vector<TopLogprobEntry> top;     // best `top_logprobs` by raw logprob
};

class Sampler {
 public:
  // `history` = the prompt ids (repetition penalty looks at prompt + output).
  Sampler(const SamplingParams& params, absl::Span<const int32_t> history);

  // logits [V] fp32. `forced` >= 0 takes that token instead of sampling
  // (teacher forcing) and still reports its logprob.
  // `log_z` = log sum exp(logits) when the caller has it (computed on the
  // device with the logits); NaN = compute it here.
  SampleResult Next(absl::Span<const float> logits, int32_t top_logprobs, int32_t forced = -1,
                    double log_z = std::numeric_limits<double>::quiet_NaN());
  // Greedy from an argmax taken where the logits are (no host copy of the
  // row): only for greedy sampling without repetition penalty.
  SampleResult Greedy(int32_t argmax, float max_logit, double log_z);

  uint64_t seed() const { return seed_; }

 private:
  SamplingParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> seen_;  // tokens penalised by repetition_penalty
};

// log-softmax of one logit row at `id` (fp64 accumulation).
float LogSoftmaxAt(absl::Span<const float> logits, int32_t id, double* log_z_out = nullptr);

}  // namespace kvstream
