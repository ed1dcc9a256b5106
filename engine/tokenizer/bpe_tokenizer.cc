#include "engine/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/byte_level.h"

namespace kvstream {
namespace {

using tok_internal::Av;

// Far above any real vocabulary (Llama-3: 128K, Gemma: 256K), low enough
// that id arithmetic stays in int32 and the tables stay small.
constexpr size_t kMaxVocab = size_t{1} << 24;
constexpr int kMaxTokenType = static_cast<int>(TokenType::kByte);

// Control tokens that close a turn or a document in the model families we
// serve; generation stops on them even when the file names another EOS
// (SmolLM2's <|endoftext|>, Llama-3's <|eot_id|> when eos is <|end_of_text|>).
constexpr std::string_view kEndOfTurnTexts[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>",
                                                "<|end_of_text|>"};

absl::Status CheckId(std::string_view field, int32_t id, size_t n, bool allow_none) {
  if ((allow_none && id == -1) || (id >= 0 && static_cast<size_t>(id) < n)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("tokenizer ", Av(field), " = ", id, "; expected ",
                                                 allow_none ? "-1 or " : "", "0..", n - 1));
}

absl::Status Validate(const TokenizerData& d) {
  if (d.model != "gpt2") {
    return absl::FailedPreconditionError(absl::StrCat(
        "tokenizer model '", d.model, "' is not supported; kvstream implements byte-level BPE ('gpt2') only"));
  }
  const size_t n = d.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("tokenizer has no tokens");
  if (n > kMaxVocab) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", n, " tokens; at most ", kMaxVocab, " supported"));
  }
  if (!d.token_types.empty() && d.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer token_types has ", d.token_types.size(),
                                                   " entries; expected ", n, " (one per token) or none"));
  }
  for (size_t i = 0; i < d.token_types.size(); ++i) {
    const int t = static_cast<int>(d.token_types[i]);
    if (t < 0 || t > kMaxTokenType) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer token_types[", i, "] = ", t, "; expected 0..", kMaxTokenType));
    }
  }
  KV_RETURN_IF_ERROR(CheckId("bos_id", d.bos_id, n, true));
  KV_RETURN_IF_ERROR(CheckId("eos_id", d.eos_id, n, true));
  KV_RETURN_IF_ERROR(CheckId("pad_id", d.pad_id, n, true));
  KV_RETURN_IF_ERROR(CheckId("unk_id", d.unk_id, n, true));
  for (size_t i = 0; i < d.extra_eos_ids.size(); ++i) {
    KV_RETURN_IF_ERROR(CheckId(absl::StrCat("extra_eos_ids[", i, "]"), d.extra_eos_ids[i], n, false));
  }
  if (d.add_bos && d.bos_id < 0) return absl::InvalidArgumentError("tokenizer add_bos is set but bos_id is -1");
  if (d.add_eos && d.eos_id < 0) return absl::InvalidArgumentError("tokenizer add_eos is set but eos_id is -1");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(TokenizerData data) {
  KV_RETURN_IF_ERROR(Validate(data));
  KV_ASSIGN_OR_RETURN(std::unique_ptr<tok_internal::BpeTokenizer> tok,
                      tok_internal::BpeTokenizer::Build(std::move(data)));
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

namespace tok_internal {

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Build(TokenizerData data) {
  std::vector<std::string> regexes = data.pre_regexes;
  bool ignore_merges = data.ignore_merges;
  if (regexes.empty()) {
    auto named = RegexesForPreName(data.pre);
    if (!named.ok()) return absl::FailedPreconditionError(named.status().message());
    regexes = *std::move(named);
    ignore_merges = ignore_merges || PreNameIgnoresMerges(data.pre);
  }
  KV_ASSIGN_OR_RETURN(PreTokenizer pre, PreTokenizer::Create(regexes));
  KV_ASSIGN_OR_RETURN(BpeModel model, BpeModel::Create(data.tokens, data.merges, data.unk_id, ignore_merges));
  if (data.token_types.empty()) data.token_types.assign(data.tokens.size(), TokenType::kNormal);

  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer(std::move(data), std::move(model), std::move(pre)));
  const TokenizerData& d = tok->data_;
  const size_t n = d.tokens.size();
  tok->token_bytes_.reserve(n);
  for (const std::string& t : d.tokens) tok->token_bytes_.push_back(ByteLevelDecode(t));

  tok->end_of_generation_.assign(n, false);
  if (d.eos_id >= 0) tok->end_of_generation_[d.eos_id] = true;
  for (int32_t id : d.extra_eos_ids) tok->end_of_generation_[id] = true;
  for (size_t id = 0; id < n; ++id) {
    if (d.token_types[id] != TokenType::kControl) continue;
    for (std::string_view text : kEndOfTurnTexts) {
      if (d.tokens[id] == text) tok->end_of_generation_[id] = true;
    }
  }

  // Control and user-defined tokens are matched in raw text before any
  // splitting, as tokenizers' added vocabulary does (leftmost, then longest).
  for (size_t id = 0; id < n; ++id) {
    const TokenType t = d.token_types[id];
    if ((t == TokenType::kControl || t == TokenType::kUserDefined) && !d.tokens[id].empty()) {
      tok->added_by_first_byte_[static_cast<uint8_t>(d.tokens[id][0])].push_back(static_cast<int32_t>(id));
    }
  }
  for (auto& bucket : tok->added_by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(),
                     [&](int32_t a, int32_t b) { return d.tokens[a].size() > d.tokens[b].size(); });
  }
  tok->chat_ = AnalyzeChatTemplate(d.chat_template);
  return tok;
}

int32_t BpeTokenizer::MatchAddedToken(std::string_view text, size_t pos) const {
  for (int32_t id : added_by_first_byte_[static_cast<uint8_t>(text[pos])]) {
    if (text.substr(pos).starts_with(data_.tokens[id])) return id;
  }
  return -1;
}

void BpeTokenizer::EncodeText(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::vector<std::string_view> pieces;
  pieces.reserve(text.size() / 4 + 1);
  pre_.Split(text, &pieces);
  for (std::string_view piece : pieces) model_.EncodeWord(piece, out);
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special_tokens && data_.add_bos) ids.push_back(data_.bos_id);
  size_t segment = 0;  // start of the text not yet encoded
  for (size_t pos = 0; pos < text.size();) {
    const int32_t id = added_by_first_byte_[static_cast<uint8_t>(text[pos])].empty() ? -1 : MatchAddedToken(text, pos);
    if (id < 0) {
      ++pos;
      continue;
    }
    EncodeText(text.substr(segment, pos - segment), &ids);
    ids.push_back(id);
    pos += data_.tokens[id].size();
    segment = pos;
  }
  EncodeText(text.substr(segment), &ids);
  if (add_special_tokens && data_.add_eos) ids.push_back(data_.eos_id);
  return ids;
}

std::string BpeTokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size() || (skip_special && IsSpecial(id))) continue;
    bytes += token_bytes_[id];
  }
  std::string out;
  out.reserve(bytes.size());
  AppendUtf8Lossy(bytes, /*hold_incomplete_tail=*/false, &out);
  return out;
}

std::string BpeTokenizer::TokenBytes(int32_t id) const {
  return id >= 0 && id < vocab_size() ? token_bytes_[id] : std::string();
}

std::string BpeTokenizer::TokenPiece(int32_t id) const {
  return id >= 0 && id < vocab_size() ? data_.tokens[id] : std::string();
}

bool BpeTokenizer::IsEndOfGeneration(int32_t id) const {
  return id >= 0 && id < vocab_size() && end_of_generation_[id];
}

bool BpeTokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  const TokenType t = data_.token_types[id];
  return t == TokenType::kControl || t == TokenType::kUnknown;
}

absl::StatusOr<std::string> BpeTokenizer::ApplyChatTemplate(absl::Span<const ChatMessage> messages,
                                                            bool add_generation_prompt) const {
  const std::string_view bos = data_.bos_id >= 0 ? std::string_view(data_.tokens[data_.bos_id]) : "";
  return RenderChat(chat_, bos, messages, add_generation_prompt);
}

}  // namespace tok_internal
}  // namespace kvstream
