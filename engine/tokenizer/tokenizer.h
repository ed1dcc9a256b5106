// Byte-level BPE tokenizer (GPT-2 family: SmolLM2, Llama-3, Qwen2) built from
// TokenizerData, with the model's pre-tokenizer regex (RE2), special tokens,
// BOS/EOS rules, incremental detokenization and chat formatting.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer_data.h"

namespace kvstream {

enum class ChatFormat { kNone, kChatML, kLlama3 };

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

class Tokenizer {
 public:
  // Validates `data` (ids in range, merges well formed, known pre-tokenizer)
  // and builds the lookup tables.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerData data);
  virtual ~Tokenizer() = default;

  // Text -> ids. Special tokens written in the text (e.g. "<|im_start|>") are
  // recognised as single ids. `add_special_tokens` adds BOS/EOS as the model's
  // metadata asks (add_bos / add_eos).
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens) const = 0;
  // Ids -> text. Ids out of range are skipped; special tokens kept unless
  // `skip_special`. Bytes that do not form valid UTF-8 become U+FFFD.
  virtual std::string Decode(absl::Span<const int32_t> ids, bool skip_special = false) const = 0;
  // The raw bytes one token stands for ("" for an id out of range).
  virtual std::string TokenBytes(int32_t id) const = 0;
  // The token's text as stored in the vocabulary ("Ġthe"), for Tokenize pieces.
  virtual std::string TokenPiece(int32_t id) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  // EOS, any of extra_eos_ids, or a control token whose text is one of
  // <|im_end|>, <|eot_id|>, <|eom_id|>, <|endoftext|>, <|end_of_text|>
  // (added by Create(), so loaders need not list them).
  virtual bool IsEndOfGeneration(int32_t id) const = 0;
  // Control (and unknown-typed) tokens: what Decode(skip_special) drops.
  virtual bool IsSpecial(int32_t id) const = 0;

  virtual ChatFormat chat_format() const = 0;
  // Renders messages in the model's chat format (picked from its
  // chat_template metadata). Error if the model has no known chat format.
  // The text already holds every special token the template writes (Llama-3's
  // <|begin_of_text|> included): encode it with add_special_tokens = false.
  virtual absl::StatusOr<std::string> ApplyChatTemplate(absl::Span<const ChatMessage> messages,
                                                        bool add_generation_prompt) const = 0;
};

// Streams text as tokens arrive and never emits a broken UTF-8 sequence:
// bytes of an incomplete character are held back until it completes.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = false);
  // Returns the newly completed text (possibly empty).
  std::string Push(int32_t id);
  // At end of stream: whatever is held back, invalid bytes as U+FFFD.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  std::string pending_;  // bytes of an incomplete UTF-8 sequence
};

}  // namespace kvstream
