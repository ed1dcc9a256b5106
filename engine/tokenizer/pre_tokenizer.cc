#include "engine/tokenizer/pre_tokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"
#include "re2/re2.h"

namespace kvstream::tok_internal {
namespace {

// The split regexes as their models publish them (Oniguruma dialect).
// GPT-2: what tokenizers' ByteLevel pre-tokenizer runs when use_regex=true.
// NOTE(tokenizer): transformers' GGUF converter gives SmolLM2 ("smollm") only
// this ByteLevel regex, although the original SmolLM2 tokenizer.json first
// splits digits one by one (and llama.cpp follows that). Our oracle is
// transformers on the GGUF, so "smollm" maps here. The two differ only for a
// space before a non-ASCII digit (" ²"): the vocabulary has no digit merges.
constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama-3 (tiktoken cl100k style): case-insensitive contractions, digits in
// groups of at most three, one non-letter may lead a word.
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: as Llama-3 but every digit is its own piece.
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr std::string_view kWsLookaheadSuffix = R"(\s+(?!\S)|\s+)";

// Oniguruma's Unicode classes, as RE2 class items (no brackets).
constexpr std::string_view kSpaceItems = R"(\t\n\x{0B}\f\r \x{85}\p{Z})";
constexpr std::string_view kDigitItems = R"(\p{Nd})";
constexpr std::string_view kWordItems = R"(\p{L}\p{M}\p{Nd}\p{Pc})";

// Rewrites \s \S \d \D \w \W; everything else is passed through for RE2 to
// accept or reject.
absl::StatusOr<std::string> RewriteClasses(std::string_view p) {
  std::string out;
  out.reserve(p.size() * 2);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[i + 1];
      std::string_view items;
      bool negated = false;
      switch (e) {
        case 's': items = kSpaceItems; break;
        case 'S': items = kSpaceItems, negated = true; break;
        case 'd': items = kDigitItems; break;
        case 'D': items = kDigitItems, negated = true; break;
        case 'w': items = kWordItems; break;
        case 'W': items = kWordItems, negated = true; break;
        default: break;
      }
      if (items.empty()) {
        out.append(p.substr(i, 2));
      } else if (!in_class) {
        absl::StrAppend(&out, negated ? "[^" : "[", Av(items), "]");
      } else if (!negated) {
        out.append(items);
      } else {
        return absl::FailedPreconditionError(absl::StrCat(
            "pre-tokenizer regex uses \\", std::string(1, e),
            " inside a character class, which kvstream cannot express in RE2: ", Av(p)));
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

// Start of the last UTF-8 character of a non-empty string.
size_t LastCharStart(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

// Length of the UTF-8 character starting at s[i] (1 for a stray byte).
size_t CharLen(std::string_view s, size_t i) {
  size_t j = i + 1;
  while (j < s.size() && (static_cast<uint8_t>(s[j]) & 0xC0) == 0x80) ++j;
  return j - i;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> RegexesForPreName(std::string_view pre) {
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "smollm") {
    return std::vector<std::string>{std::string(kGpt2Regex)};
  }
  if (pre == "llama-bpe" || pre == "llama3") return std::vector<std::string>{std::string(kLlama3Regex)};
  if (pre == "qwen2") return std::vector<std::string>{std::string(kQwen2Regex)};
  return absl::NotFoundError(absl::StrCat(
      "unknown pre-tokenizer '", Av(pre),
      "'; kvstream knows: default, gpt2, smollm, llama-bpe, llama3, qwen2"));
}

bool PreNameIgnoresMerges(std::string_view pre) { return pre == "llama-bpe" || pre == "llama3"; }

absl::StatusOr<Re2Pattern> TranslateToRe2(std::string_view onig) {
  Re2Pattern result;
  std::string_view body = onig;
  if (body.ends_with(kWsLookaheadSuffix)) {
    body.remove_suffix(kWsLookaheadSuffix.size());
    if (!body.empty()) {
      if (body.back() != '|') {
        return absl::FailedPreconditionError(
            absl::StrCat("pre-tokenizer regex ends in \\s+(?!\\S)|\\s+ but not as a top-level alternative: ", Av(onig)));
      }
      body.remove_suffix(1);
    }
    result.ws_lookahead = true;
  }
  for (std::string_view look : {"(?!", "(?=", "(?<=", "(?<!"}) {
    if (body.find(look) != std::string_view::npos) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pre-tokenizer regex uses lookaround '", Av(look),
          "', which RE2 lacks (only a final \\s+(?!\\S)|\\s+ is emulated): ", Av(onig)));
    }
  }
  auto rewritten = RewriteClasses(body);
  if (!rewritten.ok()) return rewritten.status();
  result.pattern = *std::move(rewritten);
  if (result.ws_lookahead) {
    // Capturing group: Split() must know this alternative was the one taken.
    absl::StrAppend(&result.pattern, result.pattern.empty() ? "" : "|", "([", Av(kSpaceItems), "]+)");
  }
  return result;
}

absl::StatusOr<PreTokenizer> PreTokenizer::Create(const std::vector<std::string>& onig_patterns) {
  PreTokenizer pt;
  for (const std::string& onig : onig_patterns) {
    auto translated = TranslateToRe2(onig);
    if (!translated.ok()) return translated.status();
    RE2::Options options;
    options.set_log_errors(false);
    options.set_encoding(RE2::Options::EncodingUTF8);
    // Unicode classes such as \p{L} make large automata; the default 8 MiB
    // can make RE2 fall back to its slow NFA on long inputs.
    options.set_max_mem(int64_t{64} << 20);
    auto re = std::make_unique<RE2>(translated->pattern, options);
    if (!re->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pre-tokenizer regex does not compile (", re->error(), "): ", Av(onig)));
    }
    if (translated->ws_lookahead && re->NumberOfCapturingGroups() < 1) {
      return absl::InternalError("whitespace group lost in regex translation");
    }
    Stage stage;
    stage.re = std::move(re);
    stage.ws_lookahead = translated->ws_lookahead;
    pt.stages_.push_back(std::move(stage));
  }
  return pt;
}

PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::SplitStage(const Stage& stage, std::string_view piece,
                              std::vector<std::string_view>* out) const {
  const RE2& re = *stage.re;
  // The whitespace group is the last capturing group we appended; earlier
  // groups (from the model's own regex) are not needed.
  const int ngroups = stage.ws_lookahead ? re.NumberOfCapturingGroups() + 1 : 1;
  re2::StringPiece stack_groups[8];
  std::vector<re2::StringPiece> heap_groups;  // only for model regexes with many groups
  re2::StringPiece* groups = stack_groups;
  if (ngroups > 8) {
    heap_groups.resize(ngroups);
    groups = heap_groups.data();
  }
  size_t gap_start = 0;  // start of text not yet covered by a match
  size_t search = 0;     // where the next match may start
  while (search < piece.size()) {
    // Anchored first: these regexes match at every position, and an anchored
    // search never scans ahead.
    bool found = re.Match(piece, search, piece.size(), RE2::ANCHOR_START, groups, ngroups);
    if (!found) found = re.Match(piece, search, piece.size(), RE2::UNANCHORED, groups, ngroups);
    if (!found) break;
    const size_t start = static_cast<size_t>(groups[0].data() - piece.data());
    size_t end = start + groups[0].size();
    if (end == start) {  // empty match: skip one character, it stays in the gap
      search = start + CharLen(piece, start);
      continue;
    }
    if (stage.ws_lookahead && groups[ngroups - 1].data() != nullptr && end < piece.size()) {
      // `\s+(?!\S)` stand-in: hand the run's last character to the next piece.
      const size_t last = start + LastCharStart(std::string_view(groups[0].data(), groups[0].size()));
      if (last > start) end = last;
    }
    if (start > gap_start) out->push_back(piece.substr(gap_start, start - gap_start));
    out->push_back(piece.substr(start, end - start));
    gap_start = search = end;
  }
  if (gap_start < piece.size()) out->push_back(piece.substr(gap_start));
}

void PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* out) const {
  if (text.empty()) return;
  if (stages_.empty()) {
    out->push_back(text);
    return;
  }
  std::vector<std::string_view> current{text};
  std::vector<std::string_view> next;
  for (size_t s = 0; s < stages_.size(); ++s) {
    std::vector<std::string_view>* dst = (s + 1 == stages_.size()) ? out : &next;
    for (std::string_view piece : current) SplitStage(stages_[s], piece, dst);
    if (dst == &next) {
      current.swap(next);
      next.clear();
    }
  }
}

}  // namespace kvstream::tok_internal
