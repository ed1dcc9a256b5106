// Private to engine/tokenizer/: the byte-level BPE Tokenizer that
// Tokenizer::Create() returns. Immutable after construction, so every const
// method may run on several threads at once.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/chat_format.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvstream::tok_internal {

class BpeTokenizer final : public Tokenizer {
 public:
  // Called by Tokenizer::Create() once `data` is validated.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Build(TokenizerData data);

  // ---- Tokenizer interface ----
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const override;
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special) const override;
  std::string TokenBytes(int32_t id) const override;
  std::string TokenPiece(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(data_.tokens.size()); }
  int32_t bos_id() const override { return data_.bos_id; }
  int32_t eos_id() const override { return data_.eos_id; }
  bool IsEndOfGeneration(int32_t id) const override;
  bool IsSpecial(int32_t id) const override;
  ChatFormat chat_format() const override { return chat_.format; }
  absl::StatusOr<std::string> ApplyChatTemplate(absl::Span<const ChatMessage> messages,
                                                bool add_generation_prompt) const override;

 private:
  BpeTokenizer(TokenizerData data, BpeModel model, PreTokenizer pre)
      : data_(std::move(data)), model_(std::move(model)), pre_(std::move(pre)) {}

  // Longest added token (control or user-defined) starting at text[pos], or -1.
  int32_t MatchAddedToken(std::string_view text, size_t pos) const;
  // Ordinary text (no added tokens in it) -> ids.
  void EncodeText(std::string_view text, std::vector<int32_t>* out) const;

  TokenizerData data_;
  BpeModel model_;
  PreTokenizer pre_;
  std::vector<std::string> token_bytes_;  // id -> raw bytes (ByteLevelDecode of the token)
  std::vector<bool> end_of_generation_;   // id -> ends generation
  // Added tokens to recognise inside text, bucketed by first byte, each
  // bucket longest first so the first hit is the longest match.
  std::array<std::vector<int32_t>, 256> added_by_first_byte_;
  ChatTemplateInfo chat_;
};

}  // namespace kvstream::tok_internal
