// The requests of one `kvstream eval` run: every (task, context, depth,
// sample) case built once, from seeded random corpus windows, and then sent
// once per strategy, so every strategy answers exactly the same prompts.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/corpus.h"
#include "client/eval_prompts.h"
#include "kvstream/v1/kvstream.pb.h"

namespace kvstream::client {

enum class EvalTask { kPasskey, kNeedle, kPpl, kAgreement };
inline constexpr int kEvalTaskCount = 4;

absl::string_view TaskName(EvalTask task);

// "passkey,ppl" -> tasks in the canonical order; InvalidArgument on an unknown name.
absl::StatusOr<std::vector<EvalTask>> ParseTasks(absl::string_view list);

// "1024,2048" -> {1024, 2048}; every value in [lo, hi]. `flag` names errors.
absl::StatusOr<std::vector<int32_t>> ParseIntList(absl::string_view flag, absl::string_view list, int32_t lo,
                                                  int32_t hi);

struct EvalSettings {
  std::vector<EvalTask> tasks;
  std::vector<int32_t> contexts;  // prompt tokens
  std::vector<int32_t> depths;    // passkey, % of the filler
  int32_t samples = 4;            // per cell
  uint64_t seed = 0;
  int32_t ppl_tokens = 128;
  int32_t agreement_tokens = 64;
};

struct EvalCase {
  EvalTask task;
  int32_t context = 0;
  int32_t depth = -1;  // passkey: the requested depth (%); -1 for the other tasks
  int32_t sample = 0;
  std::string answer;                   // passkey, needle: the expected digits
  kvstream::v1::GenerateRequest request;  // kv_compression unset: the run fills it per strategy
  int32_t question_tokens = 0;          // passkey, needle: the trailing question's tokens; 0 otherwise
};

// The request's KvCompression for one run: `kv` itself, except that a
// laser_kv run without an explicit query_len gets the case's question length
// as its query (laser_kv.md §6.1: LASER-KV scores the context with the
// question, which the eval's prompts put at the end; the default 64 would
// probe with filler tokens too).
kvstream::v1::KvCompression EvalKvFor(const kvstream::v1::KvCompression& kv, const EvalCase& c);

// Greedy answer tokens for passkey and needle.
inline constexpr int32_t kAnswerTokens = 10;

// Every case, in (task, context, depth, sample) order. `progress` is called
// once per case built.
absl::StatusOr<std::vector<EvalCase>> BuildEvalCases(const EvalSettings& settings, const Corpus& corpus,
                                                     TextTokenizer& tokenizer, const PromptFormat& format,
                                                     const std::function<void()>& progress);

// Number of cases BuildEvalCases makes (for the progress bar).
int64_t CountEvalCases(const EvalSettings& settings);

}  // namespace kvstream::client
