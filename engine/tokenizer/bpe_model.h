// Private to engine/tokenizer/: the byte-level BPE merge step for one
// pre-token, working on token ids rather than strings so that encoding never
// builds the "Ġ..." form of the text.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace kvstream::tok_internal {

class BpeModel {
 public:
  // `tokens`: id -> vocabulary form; `merges`: "left right", best first.
  // Every merge must name two vocabulary tokens whose concatenation is also
  // one (tokenizers refuses such a file too). `unk_id` (-1: none) stands for
  // a byte whose table character is missing from the vocabulary.
  // `ignore_merges`: a pre-token that is itself a vocabulary entry becomes
  // that token directly (Llama-3's tokenizer.json sets this).
  static absl::StatusOr<BpeModel> Create(const std::vector<std::string>& tokens,
                                         const std::vector<std::string>& merges, int32_t unk_id,
                                         bool ignore_merges);

  // Appends the ids of one pre-token (raw bytes). Merges apply lowest rank
  // first, leftmost first among equal ranks, the order tokenizers uses.
  void EncodeWord(std::string_view bytes, std::vector<int32_t>* out) const;

  // Vocabulary form -> id, or -1. With duplicate entries the last id wins,
  // as in the {token: id} map transformers builds from a GGUF token list.
  int32_t Find(std::string_view piece) const;

 private:
  struct MergeResult {
    int32_t rank;
    int32_t id;  // id of left+right
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  absl::flat_hash_map<std::string, int32_t> vocab_;
  absl::flat_hash_map<uint64_t, MergeResult> merges_;  // PairKey(left id, right id) -> result
  std::array<int32_t, 256> byte_ids_{};                // raw byte -> id of its table character, or -1
  int32_t unk_id_ = -1;
  bool ignore_merges_ = false;
};

}  // namespace kvstream::tok_internal
