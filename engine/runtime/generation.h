// Per-request generation state shared by the batch loop (and later the
// scheduler): prompt progress, sampler, incremental detokenizer, stop-string
// matching, finish rules, timings. No tensors here: the step loop hands it
// logit rows and it decides what the client sees.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/kv/cache_report.h"
#include "engine/kv/strategy_config.h"
#include "engine/sampling/sampler.h"
#include "engine/sampling/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvstream {

struct GenerateSpec {
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  StrategyConfig kv;
  bool return_logprobs = false;
  int32_t top_logprobs = 0;              // 0..20
  std::vector<int32_t> teacher_forced;   // decode these instead of sampling
};

// Prompt plus the most tokens the request may add.
inline int64_t TotalTokens(const GenerateSpec& s) {
  return static_cast<int64_t>(s.prompt_ids.size()) +
         (s.teacher_forced.empty() ? s.sampling.max_new_tokens : static_cast<int64_t>(s.teacher_forced.size()));
}

enum class FinishReason { kUnspecified = 0, kLength = 1, kStop = 2, kEos = 3 };

struct TokenOut {
  int32_t id = 0;
  float logprob = 0.0f;
  std::vector<TopLogprobEntry> top;
};

// One row of a step's logits as the sampler gets it: the full row on the
// host, or (when no request of the step needs more) only its argmax.
struct RowLogits {
  const float* logits = nullptr;  // [vocab] fp32 host, or nullptr
  int64_t vocab = 0;
  double log_z = 0;               // log sum exp of the row
  int32_t argmax = -1;            // first maximum (when logits is nullptr)
  float max_logit = 0;
};

// What one step adds to a stream: complete UTF-8 text and the token ids.
struct StreamDelta {
  std::string text;
  std::vector<TokenOut> tokens;
};

struct Timings {
  double queue_ms = 0, ttft_ms = 0, total_ms = 0, mean_itl_ms = 0, p99_itl_ms = 0;
  double prefill_ms = 0;  // time of the steps that ran this request's prompt
};

struct GenerateOutcome {
  FinishReason finish = FinishReason::kUnspecified;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  std::vector<int32_t> token_ids;  // generated ids (EOS included when it ended the request)
  std::vector<float> logprobs;     // raw-model logprob of each generated id
  std::string text;                // what was streamed, stop string excluded
  Timings timings;
  CacheReport cache;
};

// Holds back text that may be the start of a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends `text`; returns what is safe to emit. Sets *stopped when a stop
  // string completed (text from it on is dropped).
  std::string Push(const std::string& text, bool* stopped);
  // End of stream: everything still held back.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

class Generation {
 public:
  using Clock = std::chrono::steady_clock;
  Generation(const GenerateSpec& spec, const Tokenizer& tokenizer);

  // Consumes one step's result for this request (see RowLogits); returns
  // the delta to stream. Sets finished().
  StreamDelta Accept(const RowLogits& row);
  // False when a device-side argmax is all this request needs (greedy, no
  // repetition penalty, no top logprobs, not teacher-forced).
  bool NeedsFullLogits() const;
  bool finished() const { return finish_ != FinishReason::kUnspecified; }
  int64_t generated() const { return static_cast<int64_t>(ids_.size()); }
  GenerateOutcome TakeOutcome(CacheReport cache);

  const GenerateSpec& spec() const { return spec_; }
  int64_t prompt_done = 0;          // prompt tokens already in the cache
  int32_t last_token = -1;          // to feed at the next decode step
  Clock::time_point start = Clock::now();
  double prefill_ms = 0;

 private:
  GenerateSpec spec_;
  const Tokenizer& tokenizer_;
  Sampler sampler_;
  IncrementalDetokenizer detok_;
  StopMatcher stops_;
  FinishReason finish_ = FinishReason::kUnspecified;
  std::vector<int32_t> ids_;
  std::vector<float> logprobs_;
  std::string text_;
  std::vector<double> itl_ms_;
  Clock::time_point last_token_time_;
  double ttft_ms_ = 0;
};

}  // namespace kvstream
