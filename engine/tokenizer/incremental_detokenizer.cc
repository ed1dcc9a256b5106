// IncrementalDetokenizer: a token may end in the middle of a UTF-8 character
// (byte-level BPE splits emoji and CJK across tokens), so bytes of an
// unfinished character wait in pending_ until the token that completes it.
// Chunks are cut with the same lossy rules as Tokenizer::Decode, so the
// concatenated stream equals the one-shot decode of the same ids.
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvstream {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(tokenizer), skip_special_(skip_special) {}

std::string IncrementalDetokenizer::Push(int32_t id) {
  if (skip_special_ && tokenizer_.IsSpecial(id)) return std::string();
  pending_ += tokenizer_.TokenBytes(id);
  std::string out;
  // Bytes that can never complete (a stray continuation byte, a lead byte
  // followed by a non-continuation) become U+FFFD now; only a well-formed
  // unfinished prefix (at most 3 bytes) stays pending.
  const size_t used = tok_internal::AppendUtf8Lossy(pending_, /*hold_incomplete_tail=*/true, &out);
  pending_.erase(0, used);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  tok_internal::AppendUtf8Lossy(pending_, /*hold_incomplete_tail=*/false, &out);
  pending_.clear();
  return out;
}

}  // namespace kvstream
