#include "client/eval_prompts.h"

#include <algorithm>
#include <array>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace kvstream::client {
namespace {

constexpr absl::string_view kPasskeyIntro =
    "There is a pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the pass key.\n\n";
constexpr absl::string_view kNeedleIntro =
    "Some special magic numbers are hidden inside a lot of irrelevant text. Find them and memorize them. "
    "I will quiz you about one of them.\n\n";

// Distinct single-token-ish words to hang the needle values on.
constexpr std::array<absl::string_view, 24> kNeedleWords = {
    "apple",  "river",   "violin", "garden", "copper",  "lantern", "meadow", "falcon",
    "harbor", "pepper",  "marble", "candle", "thunder", "orchard", "saddle", "velvet",
    "anchor", "compass", "walnut", "glacier", "ribbon", "tunnel",  "cactus", "pebble"};

struct Insertion {
  size_t at;  // filler index the sentence goes before
  std::vector<int32_t> ids;
};

// prefix + filler (with the insertions) + suffix, filler cut so the whole is
// exactly `context` tokens. Insertion indices are fractions of the cut filler.
absl::StatusOr<std::vector<int32_t>> Assemble(const std::vector<int32_t>& prefix, const Tokens& filler,
                                              std::vector<std::pair<int, std::vector<int32_t>>> sentences,
                                              const std::vector<int32_t>& suffix, int32_t context,
                                              std::vector<int>& depths_out) {
  size_t fixed = prefix.size() + suffix.size();
  for (const auto& s : sentences) fixed += s.second.size();
  if (static_cast<size_t>(context) <= fixed) {
    return absl::InvalidArgumentError(
        absl::StrCat("context ", context, " is too short: the question alone takes ", fixed, " tokens"));
  }
  const size_t room = static_cast<size_t>(context) - fixed;
  if (filler.size() < room) {
    return absl::InvalidArgumentError(absl::StrCat("filler has ", filler.size(), " tokens, need ", room));
  }
  Tokens cut;
  cut.ids.assign(filler.ids.begin(), filler.ids.begin() + static_cast<std::ptrdiff_t>(room));
  cut.pieces.assign(filler.pieces.begin(), filler.pieces.begin() + static_cast<std::ptrdiff_t>(room));
  std::vector<Insertion> inserts;
  for (auto& [depth, ids] : sentences) {
    const size_t raw = static_cast<size_t>(static_cast<double>(room) * depth / 100.0 + 0.5);
    const size_t at = SnapToSentenceEnd(cut, std::min(raw, room));
    depths_out.push_back(room == 0 ? 0 : static_cast<int>(100.0 * static_cast<double>(at) / room + 0.5));
    inserts.push_back({at, std::move(ids)});
  }
  std::stable_sort(inserts.begin(), inserts.end(), [](const Insertion& a, const Insertion& b) { return a.at < b.at; });
  std::vector<int32_t> out = prefix;
  size_t pos = 0;
  for (const Insertion& ins : inserts) {
    out.insert(out.end(), cut.ids.begin() + static_cast<std::ptrdiff_t>(pos),
               cut.ids.begin() + static_cast<std::ptrdiff_t>(ins.at));
    out.insert(out.end(), ins.ids.begin(), ins.ids.end());
    pos = ins.at;
  }
  out.insert(out.end(), cut.ids.begin() + static_cast<std::ptrdiff_t>(pos), cut.ids.end());
  out.insert(out.end(), suffix.begin(), suffix.end());
  return out;
}

absl::StatusOr<std::vector<int32_t>> Ids(TextTokenizer& tokenizer, const std::string& text) {
  auto t = tokenizer.Tokenize(text);
  if (!t.ok()) return t.status();
  return std::move(t->ids);
}

}  // namespace

PromptFormat ChatMlFormat() { return {"chatml", "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"}; }
PromptFormat PlainFormat() { return {"plain", "", "\n"}; }

absl::StatusOr<PromptFormat> ResolvePromptFormat(absl::string_view flag, TextTokenizer& tokenizer) {
  if (flag == "chatml") return ChatMlFormat();
  if (flag == "plain") return PlainFormat();
  if (flag != "auto") {
    return absl::InvalidArgumentError(absl::StrCat("--prompt-format=", flag, ": expected chatml, plain or auto"));
  }
  for (const char* special : {"<|im_start|>", "<|im_end|>"}) {
    auto t = tokenizer.Tokenize(special);
    if (!t.ok()) return t.status();
    if (t->size() != 1) return PlainFormat();
  }
  return ChatMlFormat();
}

size_t SnapToSentenceEnd(const Tokens& filler, size_t index) {
  index = std::min(index, filler.size());
  auto ends_sentence = [](absl::string_view piece) {
    while (!piece.empty() && (piece.back() == '"' || piece.back() == '\'' || piece.back() == ' ')) {
      piece.remove_suffix(1);
    }
    if (piece.empty()) return false;
    const char c = piece.back();
    return c == '.' || c == '!' || c == '?' || c == '\n';
  };
  for (size_t back = 0; back <= 64 && back <= index; ++back) {
    const size_t at = index - back;
    if (at == 0) return at;  // the very start of the filler
    if (ends_sentence(filler.pieces[at - 1])) return at;
  }
  return index;
}

std::string RandomKey(std::mt19937_64& rng) {
  return absl::StrCat(std::uniform_int_distribution<int>(10000, 99999)(rng));
}

absl::StatusOr<RetrievalCase> BuildPasskey(TextTokenizer& tokenizer, const PromptFormat& format,
                                           const Tokens& filler, int32_t context, int depth_pct,
                                           const std::string& key) {
  auto prefix = Ids(tokenizer, absl::StrCat(format.user_begin, kPasskeyIntro));
  auto needle = Ids(tokenizer, absl::StrCat("\nThe pass key is ", key, ". Remember it. ", key, " is the pass key.\n"));
  auto suffix =
      Ids(tokenizer, absl::StrCat("\n\nWhat is the pass key?", format.assistant_begin, "The pass key is"));
  for (const auto* part : {&prefix, &needle, &suffix}) {
    if (!part->ok()) return part->status();
  }
  RetrievalCase out;
  out.answer = key;
  out.question_tokens = static_cast<int32_t>(suffix->size());
  auto prompt = Assemble(*prefix, filler, {{depth_pct, *needle}}, *suffix, context, out.depths);
  if (!prompt.ok()) return prompt.status();
  out.prompt = std::move(*prompt);
  return out;
}

absl::StatusOr<RetrievalCase> BuildNeedle(TextTokenizer& tokenizer, const PromptFormat& format,
                                          const Tokens& filler, int32_t context, std::mt19937_64& rng) {
  std::vector<absl::string_view> words(kNeedleWords.begin(), kNeedleWords.end());
  std::shuffle(words.begin(), words.end(), rng);
  std::vector<std::pair<int, std::vector<int32_t>>> sentences;
  std::vector<std::string> values;
  for (int i = 0; i < kNeedlePairs; ++i) {
    values.push_back(RandomKey(rng));
    const int lo = 100 * i / kNeedlePairs;
    const int hi = 100 * (i + 1) / kNeedlePairs;
    const int depth = std::uniform_int_distribution<int>(lo, hi)(rng);
    auto ids = Ids(tokenizer, absl::StrCat("\nThe special magic number for ", words[i], " is ", values.back(), ".\n"));
    if (!ids.ok()) return ids.status();
    sentences.emplace_back(depth, std::move(*ids));
  }
  const int asked = std::uniform_int_distribution<int>(0, kNeedlePairs - 1)(rng);
  auto prefix = Ids(tokenizer, absl::StrCat(format.user_begin, kNeedleIntro));
  auto suffix = Ids(tokenizer, absl::StrCat("\n\nWhat is the special magic number for ", words[asked], "?",
                                            format.assistant_begin, "The special magic number for ", words[asked],
                                            " is"));
  if (!prefix.ok()) return prefix.status();
  if (!suffix.ok()) return suffix.status();
  RetrievalCase out;
  out.answer = values[static_cast<size_t>(asked)];
  out.question_tokens = static_cast<int32_t>(suffix->size());
  auto prompt = Assemble(*prefix, filler, std::move(sentences), *suffix, context, out.depths);
  if (!prompt.ok()) return prompt.status();
  out.prompt = std::move(*prompt);
  return out;
}

bool AnswerMatches(const std::string& generated, const std::string& answer) {
  const std::string compact = absl::StrReplaceAll(generated, {{" ", ""}});
  const size_t begin = compact.find_first_of("0123456789");
  if (begin == std::string::npos) return false;
  size_t end = begin;
  while (end < compact.size() && compact[end] >= '0' && compact[end] <= '9') ++end;
  return compact.compare(begin, end - begin, answer) == 0 && end - begin == answer.size();
}

PerplexityCase SplitForPerplexity(const Tokens& window, int32_t forced) {
  const size_t n = window.size();
  const size_t f = std::min<size_t>(static_cast<size_t>(std::max(forced, 1)), n > 1 ? n - 1 : 0);
  PerplexityCase out;
  out.prompt.assign(window.ids.begin(), window.ids.end() - static_cast<std::ptrdiff_t>(f));
  out.forced.assign(window.ids.end() - static_cast<std::ptrdiff_t>(f), window.ids.end());
  return out;
}

int32_t AgreeingPrefix(const std::vector<int32_t>& reference, const std::vector<int32_t>& tokens) {
  const size_t n = std::min(reference.size(), tokens.size());
  size_t i = 0;
  while (i < n && reference[i] == tokens[i]) ++i;
  return static_cast<int32_t>(i);
}

}  // namespace kvstream::client
