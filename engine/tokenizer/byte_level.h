// Private to engine/tokenizer/: the GPT-2 byte <-> unicode table that
// byte-level BPE vocabularies are written in, and the UTF-8 helpers shared by
// Decode() and IncrementalDetokenizer (they must replace invalid bytes the
// same way, or a streamed reply would differ from a one-shot decode).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace kvstream::tok_internal {

// NOTE(tokenizer): Debian's abseil is built with its own absl::string_view,
// not an alias of std::string_view; this bridges the two for StrCat & co.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// GPT-2's table: each raw byte is written in the vocabulary as one printable
// code point. Bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves;
// the other 68 bytes (controls, space, 0x7F..0xA0, 0xAD) become U+0100.. in
// byte order, so a space is 'Ġ' (U+0120) and '\n' is 'Ċ' (U+010A).
const std::array<uint32_t, 256>& ByteToCodepoint();

// Raw bytes -> vocabulary form ("a b" -> "aĠb").
std::string ByteLevelEncode(std::string_view bytes);

// Vocabulary form -> raw bytes. A code point outside the table is kept as its
// own UTF-8 bytes, which is what Hugging Face's ByteLevel decoder does (it
// matters only for special tokens such as "<|im_start|>", all ASCII).
std::string ByteLevelDecode(std::string_view piece);

void AppendUtf8(uint32_t codepoint, std::string* out);

// Decodes one UTF-8 character at s[pos]; returns its length (1..4) and sets
// *cp, or returns 0 when the bytes there are not a complete valid character.
size_t DecodeUtf8(std::string_view s, size_t pos, uint32_t* cp);

// Appends `in` to `out` as valid UTF-8: each maximal ill-formed subpart
// becomes one U+FFFD (the Unicode "best practice" that Python's and Rust's
// lossy decoders follow, so Decode matches transformers byte for byte).
// If `hold_incomplete_tail`, a trailing sequence that is a valid but
// unfinished prefix (e.g. the first 2 bytes of a 4-byte emoji) is not
// consumed. Returns the number of bytes of `in` consumed.
size_t AppendUtf8Lossy(std::string_view in, bool hold_incomplete_tail, std::string* out);

bool IsValidUtf8(std::string_view s);

}  // namespace kvstream::tok_internal
