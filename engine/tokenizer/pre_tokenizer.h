// Private to engine/tokenizer/: splits text into the pieces ("pre-tokens")
// that BPE merges never cross, with the model's split regexes run by RE2.
//
// Regexes arrive in the Oniguruma/PCRE dialect that tokenizer.json and
// llama.cpp use; TranslateToRe2() rewrites the two constructs whose meaning
// differs in RE2:
//  - `\s`, `\d`, `\w` are Unicode-aware in Oniguruma but ASCII-only in RE2,
//    so they become explicit Unicode classes (e.g. `\s` = [\t-\r\x{85}\p{Z}],
//    the White_Space set, which makes U+00A0 and U+3000 whitespace too).
//  - RE2 has no lookahead. Every byte-level BPE regex we know ends in
//    `\s+(?!\S)|\s+` ("a whitespace run, minus its last character when a
//    non-space follows, so that ' word' keeps its space"). That suffix becomes
//    a capturing `(\s+)`, and Split() gives back the last character of such a
//    match when it is longer than one character and not at the end of the
//    piece. The backtracking engine finds exactly that: `\s+(?!\S)` can only
//    stop at the run's end (end of text) or one character before it, and
//    fails for a run of one, where the plain `\s+` takes it. Any other
//    lookaround is rejected.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace re2 {
class RE2;
}

namespace kvstream::tok_internal {

// The split regexes, one stage each, for a GGUF tokenizer.ggml.pre name.
// "" and "default", "gpt2", "smollm" -> the GPT-2 regex (no digit split);
// "llama-bpe", "llama3" -> the Llama-3 regex (digits in runs of <= 3);
// "qwen2" -> the Qwen2 regex (single digits). NotFound for other names.
absl::StatusOr<std::vector<std::string>> RegexesForPreName(std::string_view pre);

// Whether the model named by `pre` looks a whole pre-token up in the
// vocabulary before merging (tokenizer.json "ignore_merges": Llama-3 does).
bool PreNameIgnoresMerges(std::string_view pre);

struct Re2Pattern {
  std::string pattern;        // RE2 syntax
  bool ws_lookahead = false;  // last alternative is the `(\s+)` stand-in for `\s+(?!\S)|\s+`
};
absl::StatusOr<Re2Pattern> TranslateToRe2(std::string_view onig_pattern);

class PreTokenizer {
 public:
  // One stage per regex, applied in order: each stage splits every piece the
  // previous one produced, keeping both the matches and the text between
  // them (tokenizers' "Isolated" behaviour).
  static absl::StatusOr<PreTokenizer> Create(const std::vector<std::string>& onig_patterns);

  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  // Appends the pieces of `text` to `out` as views into `text`; their
  // concatenation is `text`, and no piece is empty.
  void Split(std::string_view text, std::vector<std::string_view>* out) const;

 private:
  struct Stage {
    std::unique_ptr<re2::RE2> re;
    bool ws_lookahead = false;
  };
  PreTokenizer() = default;
  void SplitStage(const Stage& stage, std::string_view piece, std::vector<std::string_view>* out) const;

  std::vector<Stage> stages_;
};

}  // namespace kvstream::tok_internal
