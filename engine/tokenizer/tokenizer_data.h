// Everything a byte-level BPE tokenizer is built from, whatever file it came
// from: GGUF metadata (tokenizer.ggml.*) or tokenizer.json +
// tokenizer_config.json. The weight loader fills it; Tokenizer::Create()
// consumes it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvstream {

// GGUF token types (llama.cpp's LLAMA_TOKEN_TYPE_*); tokenizer.json added
// tokens map to kControl when "special": true, else kUserDefined.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct TokenizerData {
  std::string model = "gpt2";         // tokenizer.ggml.model; only byte-level BPE ("gpt2") is supported
  std::vector<std::string> tokens;    // id -> token text in GPT-2 byte-to-unicode form
  std::vector<std::string> merges;    // "left right", highest priority first
  std::vector<TokenType> token_types; // same length as tokens, or empty = all kNormal
  std::string pre;                    // pre-tokenizer name (tokenizer.ggml.pre), e.g. "smollm", "llama-bpe", "qwen2"
  // Explicit split regexes (tokenizer.json), Oniguruma dialect, applied in
  // order as "Isolated" splits; empty = derived from `pre`. A final
  // `\s+(?!\S)|\s+` is allowed (emulated), no other lookaround.
  std::vector<std::string> pre_regexes;
  // A pre-token that is itself in the vocabulary skips the merges
  // (tokenizer.json model.ignore_merges; Llama-3). For GGUF files it is
  // implied by pre = "llama-bpe"/"llama3", so loaders may leave it false.
  bool ignore_merges = false;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  std::vector<int32_t> extra_eos_ids;  // e.g. <|eot_id|>, <|im_end|>: also end generation
  std::string chat_template;           // Jinja source, used only to pick a known format
};

// Parses a Hugging Face tokenizer.json (and optionally tokenizer_config.json,
// empty string if absent) into TokenizerData. Defined in engine/tokenizer/.
absl::StatusOr<TokenizerData> ParseTokenizerJson(std::string_view tokenizer_json,
                                                 std::string_view tokenizer_config_json);

}  // namespace kvstream
