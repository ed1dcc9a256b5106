// The prompts of `kvstream eval`, built as token ids so that a context of
// N tokens is exactly N tokens, and the scoring of the answers. No server:
// the tokenizer is an interface (tests use a fake one).
//
//   passkey  [intro] filler... "The pass key is 12345. Remember it. ..." ...filler [question] "The pass key is"
//   needle   the same with kNeedlePairs "special magic number for <word>" sentences; one is asked for
//   ppl      a window of running text: the first N - F tokens are the prompt, the last F are teacher-forced
//   agreement a window of running text, continued greedily; tokens compared with dense
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/server_calls.h"

namespace kvstream::client {

inline constexpr int kNeedlePairs = 4;  // key-value sentences hidden per needle prompt

// How the user's text and the start of the answer are wrapped.
struct PromptFormat {
  std::string name;             // "chatml" or "plain"
  std::string user_begin;       // before the user's text
  std::string assistant_begin;  // between the user's text and the answer prefix
};
PromptFormat ChatMlFormat();
PromptFormat PlainFormat();

// "chatml", "plain", or "auto": chatml when the tokenizer reads
// <|im_start|> and <|im_end|> as one token each. InvalidArgument otherwise.
absl::StatusOr<PromptFormat> ResolvePromptFormat(absl::string_view flag, TextTokenizer& tokenizer);

// A prompt whose greedy continuation should contain `answer`.
struct RetrievalCase {
  std::vector<int32_t> prompt;  // exactly `context` tokens
  std::string answer;           // the 5 digits expected
  std::vector<int> depths;      // where the sentences went, % of the filler (passkey: one)
  int32_t question_tokens = 0;  // the prompt's last tokens that are the question (the suffix above)
};

// The index at or before `index` just after a sentence end (a piece ending
// in . ! ? or a newline, maybe followed by a quote), looking back at most 64
// tokens; `index` itself when there is none. (At depth 100 the filler was
// cut to length mid-sentence: the key goes before that last fragment.)
size_t SnapToSentenceEnd(const Tokens& filler, size_t index);

// 5-digit key, 10000..99999.
std::string RandomKey(std::mt19937_64& rng);

// `filler` must hold at least `context` tokens (only the first ones that fit
// are used). InvalidArgument when `context` cannot even hold the fixed text.
absl::StatusOr<RetrievalCase> BuildPasskey(TextTokenizer& tokenizer, const PromptFormat& format,
                                           const Tokens& filler, int32_t context, int depth_pct,
                                           const std::string& key);

// kNeedlePairs sentences "The special magic number for <word> is <5 digits>."
// at random depths (one per quarter of the filler), then a question about
// one of them.
absl::StatusOr<RetrievalCase> BuildNeedle(TextTokenizer& tokenizer, const PromptFormat& format,
                                          const Tokens& filler, int32_t context, std::mt19937_64& rng);

// True when the first run of digits in `generated` (spaces ignored) is `answer`.
bool AnswerMatches(const std::string& generated, const std::string& answer);

struct PerplexityCase {
  std::vector<int32_t> prompt;  // window minus its last `forced` tokens
  std::vector<int32_t> forced;  // scored one step at a time (teacher_forced)
};
PerplexityCase SplitForPerplexity(const Tokens& window, int32_t forced);

// Leading tokens equal in both (0 when the first differs).
int32_t AgreeingPrefix(const std::vector<int32_t>& reference, const std::vector<int32_t>& tokens);

}  // namespace kvstream::client
