#include "engine/runtime/generation.h"

#include <algorithm>
#include <numeric>

namespace kvstream {

std::string StopMatcher::Push(const std::string& text, bool* stopped) {
  *stopped = false;
  held_ += text;
  if (stops_.empty()) return std::exchange(held_, "");
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    if (s.empty()) continue;
    size_t at = held_.find(s);
    if (at != std::string::npos) first = std::min(first, at);
  }
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Keep the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) { keep = len; break; }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::Flush() { return std::exchange(held_, ""); }

Generation::Generation(const GenerateSpec& spec, const Tokenizer& tokenizer)
    : spec_(spec),
      tokenizer_(tokenizer),
      sampler_(spec.sampling, spec.prompt_ids),
      detok_(tokenizer, /*skip_special=*/true),
      stops_(spec.sampling.stop) {}

bool Generation::NeedsFullLogits() const {
  const SamplingParams& s = spec_.sampling;
  return s.temperature > 0.0f || s.repetition_penalty != 1.0f || !spec_.teacher_forced.empty() ||
         (spec_.return_logprobs && spec_.top_logprobs > 0);
}

StreamDelta Generation::Accept(const RowLogits& row) {
  StreamDelta d;
  const size_t i = ids_.size();
  const bool forced = !spec_.teacher_forced.empty();
  const int32_t top = spec_.return_logprobs || forced ? spec_.top_logprobs : 0;
  SampleResult r = row.logits == nullptr
                       ? sampler_.Greedy(row.argmax, row.max_logit, row.log_z)
                       : sampler_.Next(absl::MakeConstSpan(row.logits, row.vocab), top,
                                       forced ? spec_.teacher_forced[i] : -1, row.log_z);
  const auto now = Clock::now();
  if (i == 0) {
    ttft_ms_ = std::chrono::duration<double, std::milli>(now - start).count();
  } else {
    itl_ms_.push_back(std::chrono::duration<double, std::milli>(now - last_token_time_).count());
  }
  last_token_time_ = now;
  ids_.push_back(r.token_id);
  logprobs_.push_back(r.logprob);
  last_token = r.token_id;
  d.tokens.push_back({r.token_id, r.logprob, std::move(r.top)});

  const int32_t limit = forced ? static_cast<int32_t>(spec_.teacher_forced.size())
                               : spec_.sampling.max_new_tokens;
  if (!forced && !spec_.sampling.ignore_eos && tokenizer_.IsEndOfGeneration(r.token_id)) {
    finish_ = FinishReason::kEos;
  } else {
    bool stopped = false;
    d.text = stops_.Push(detok_.Push(r.token_id), &stopped);
    if (stopped && !forced) finish_ = FinishReason::kStop;
  }
  if (!finished() && static_cast<int32_t>(ids_.size()) >= limit) finish_ = FinishReason::kLength;
  if (finished() && finish_ != FinishReason::kStop) {
    bool stopped = false;
    d.text += stops_.Push(detok_.Flush(), &stopped);
    if (!stopped) d.text += stops_.Flush();
  }
  text_ += d.text;
  return d;
}

GenerateOutcome Generation::TakeOutcome(CacheReport cache) {
  GenerateOutcome o;
  o.finish = finish_;
  o.prompt_tokens = static_cast<int32_t>(spec_.prompt_ids.size());
  o.completion_tokens = static_cast<int32_t>(ids_.size());
  o.token_ids = std::move(ids_);
  o.logprobs = std::move(logprobs_);
  o.text = std::move(text_);
  o.cache = std::move(cache);
  o.timings.ttft_ms = ttft_ms_;
  o.timings.prefill_ms = prefill_ms;
  o.timings.total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (!itl_ms_.empty()) {
    o.timings.mean_itl_ms = std::accumulate(itl_ms_.begin(), itl_ms_.end(), 0.0) / itl_ms_.size();
    std::vector<double> s = itl_ms_;
    const size_t k = std::min(s.size() - 1, static_cast<size_t>(0.99 * (s.size() - 1) + 0.5));
    std::nth_element(s.begin(), s.begin() + k, s.end());
    o.timings.p99_itl_ms = s[k];
  }
  return o;
}

}  // namespace kvstream
