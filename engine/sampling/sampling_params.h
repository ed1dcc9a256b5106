// Per-request sampling settings (mirrors the proto SamplingParams with the
// defaults of api.md applied).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvstream {

struct SamplingParams {
  int32_t max_new_tokens = 128;
  float temperature = 1.0f;       // 0 = greedy
  float top_p = 1.0f;             // (0, 1]
  int32_t top_k = 0;              // 0 = off
  float repetition_penalty = 1.0f;  // > 0, 1 = off
  std::optional<uint64_t> seed;   // unset = drawn from the clock
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool ignore_eos = false;
};

}  // namespace kvstream
