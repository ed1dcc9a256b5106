#include "client/eval_plan.h"

#include <algorithm>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kvstream::client {
namespace {

// The random stream of one case: the same for every strategy and every run
// with the same --seed.
std::mt19937_64 CaseRng(uint64_t seed, EvalTask task, int32_t context, int32_t depth, int32_t sample) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(task),
                    static_cast<uint32_t>(context), static_cast<uint32_t>(depth + 1), static_cast<uint32_t>(sample)};
  return std::mt19937_64(seq);
}

void SetGreedy(kvstream::v1::GenerateRequest& r, int32_t max_new_tokens, bool ignore_eos) {
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_new_tokens(max_new_tokens);
  r.mutable_sampling()->set_ignore_eos(ignore_eos);
}

absl::StatusOr<EvalCase> BuildOne(const EvalSettings& s, EvalTask task, int32_t context, int32_t depth,
                                  int32_t sample, const Corpus& corpus, TextTokenizer& tokenizer,
                                  const PromptFormat& format) {
  std::mt19937_64 rng = CaseRng(s.seed, task, context, depth, sample);
  auto window = corpus.TokenWindow(tokenizer, context, rng);
  if (!window.ok()) return window.status();
  EvalCase c{task, context, depth, sample, "", {}};
  std::vector<int32_t> prompt;
  switch (task) {
    case EvalTask::kPasskey: {
      auto built = BuildPasskey(tokenizer, format, *window, context, depth, RandomKey(rng));
      if (!built.ok()) return built.status();
      c.answer = built->answer;
      c.question_tokens = built->question_tokens;
      prompt = std::move(built->prompt);
      SetGreedy(c.request, kAnswerTokens, false);
      break;
    }
    case EvalTask::kNeedle: {
      auto built = BuildNeedle(tokenizer, format, *window, context, rng);
      if (!built.ok()) return built.status();
      c.answer = built->answer;
      c.question_tokens = built->question_tokens;
      prompt = std::move(built->prompt);
      SetGreedy(c.request, kAnswerTokens, false);
      break;
    }
    case EvalTask::kPpl: {
      PerplexityCase ppl = SplitForPerplexity(*window, std::min(s.ppl_tokens, context / 2));
      prompt = std::move(ppl.prompt);
      c.request.mutable_teacher_forced()->mutable_ids()->Add(ppl.forced.begin(), ppl.forced.end());
      c.request.set_return_logprobs(true);
      SetGreedy(c.request, static_cast<int32_t>(ppl.forced.size()), true);
      break;
    }
    case EvalTask::kAgreement:
      prompt = std::move(window->ids);
      SetGreedy(c.request, s.agreement_tokens, true);
      break;
  }
  c.request.mutable_prompt_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  c.request.set_request_id(absl::StrCat("eval-", TaskName(task), "-", context, "-", depth, "-", sample));
  return c;
}

}  // namespace

kvstream::v1::KvCompression EvalKvFor(const kvstream::v1::KvCompression& kv, const EvalCase& c) {
  kvstream::v1::KvCompression out = kv;
  if (out.has_laser_kv() && !out.laser_kv().has_query_len() && c.question_tokens > 0) {
    out.mutable_laser_kv()->set_query_len(c.question_tokens);
  }
  return out;
}

absl::string_view TaskName(EvalTask task) {
  switch (task) {
    case EvalTask::kPasskey:
      return "passkey";
    case EvalTask::kNeedle:
      return "needle";
    case EvalTask::kPpl:
      return "ppl";
    case EvalTask::kAgreement:
      return "agreement";
  }
  return "?";
}

absl::StatusOr<std::vector<EvalTask>> ParseTasks(absl::string_view list) {
  bool wanted[kEvalTaskCount] = {};
  for (absl::string_view raw : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    const absl::string_view name = absl::StripAsciiWhitespace(raw);
    bool found = false;
    for (int t = 0; t < kEvalTaskCount; ++t) {
      if (TaskName(static_cast<EvalTask>(t)) == name) wanted[t] = found = true;
    }
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tasks: unknown task '", name, "' (tasks: passkey, needle, ppl, agreement)"));
    }
  }
  std::vector<EvalTask> out;
  for (int t = 0; t < kEvalTaskCount; ++t) {
    if (wanted[t]) out.push_back(static_cast<EvalTask>(t));
  }
  if (out.empty()) return absl::InvalidArgumentError("--tasks is empty");
  return out;
}

absl::StatusOr<std::vector<int32_t>> ParseIntList(absl::string_view flag, absl::string_view list, int32_t lo,
                                                  int32_t hi) {
  std::vector<int32_t> out;
  for (absl::string_view raw : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    int32_t v = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(raw), &v) || v < lo || v > hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", raw, "' is not an integer in [", lo, ", ", hi, "]"));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, " is empty"));
  return out;
}

int64_t CountEvalCases(const EvalSettings& s) {
  int64_t n = 0;
  for (EvalTask task : s.tasks) {
    const int64_t per_context = task == EvalTask::kPasskey ? static_cast<int64_t>(s.depths.size()) : 1;
    n += per_context * static_cast<int64_t>(s.contexts.size()) * s.samples;
  }
  return n;
}

absl::StatusOr<std::vector<EvalCase>> BuildEvalCases(const EvalSettings& s, const Corpus& corpus,
                                                     TextTokenizer& tokenizer, const PromptFormat& format,
                                                     const std::function<void()>& progress) {
  std::vector<EvalCase> cases;
  for (EvalTask task : s.tasks) {
    for (int32_t context : s.contexts) {
      const std::vector<int32_t> depths = task == EvalTask::kPasskey ? s.depths : std::vector<int32_t>{-1};
      for (int32_t depth : depths) {
        for (int32_t sample = 0; sample < s.samples; ++sample) {
          auto c = BuildOne(s, task, context, depth, sample, corpus, tokenizer, format);
          if (!c.ok()) {
            return absl::Status(c.status().code(), absl::StrCat(TaskName(task), " context ", context, ": ",
                                                                c.status().message()));
          }
          cases.push_back(std::move(*c));
          if (progress) progress();
        }
      }
    }
  }
  return cases;
}

}  // namespace kvstream::client
