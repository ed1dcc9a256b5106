#include "engine/tokenizer/byte_level.h"

namespace kvstream::tok_internal {
namespace {

constexpr uint32_t kReplacementChar = 0xFFFD;

// Inverse of ByteToCodepoint(); -1 for code points the table never produces.
// The table's code points are all < 0x144, so a flat array covers them.
constexpr uint32_t kTableLimit = 0x144;

std::array<int16_t, kTableLimit> MakeInverse() {
  std::array<int16_t, kTableLimit> inv;
  inv.fill(-1);
  const auto& fwd = ByteToCodepoint();
  for (int b = 0; b < 256; ++b) inv[fwd[b]] = static_cast<int16_t>(b);
  return inv;
}

enum class Utf8Kind { kValid, kInvalid, kTruncated };

// Classifies the bytes at s[pos] by Unicode Table 3-7 (well-formed byte
// sequences). *len is the character length when valid, the length of the
// maximal ill-formed subpart (>= 1) when invalid, or the bytes left when the
// input ends inside a sequence that is well formed so far.
Utf8Kind Classify(std::string_view s, size_t pos, size_t* len) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) {
    *len = 1;
    return Utf8Kind::kValid;
  }
  size_t need = 0;       // continuation bytes after b0
  uint8_t lo = 0x80;     // allowed range of the first continuation byte
  uint8_t hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2, lo = 0xA0;  // no overlong 3-byte forms
  } else if (b0 == 0xED) {
    need = 2, hi = 0x9F;  // no UTF-16 surrogates
  } else if (b0 >= 0xE1 && b0 <= 0xEF) {
    need = 2;
  } else if (b0 == 0xF0) {
    need = 3, lo = 0x90;  // no overlong 4-byte forms
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3, hi = 0x8F;  // nothing above U+10FFFF
  } else {
    *len = 1;  // 0x80..0xC1, 0xF5..0xFF never start a character
    return Utf8Kind::kInvalid;
  }
  for (size_t i = 1; i <= need; ++i) {
    if (pos + i >= s.size()) {
      *len = i;
      return Utf8Kind::kTruncated;
    }
    const auto b = static_cast<uint8_t>(s[pos + i]);
    const uint8_t l = i == 1 ? lo : 0x80;
    const uint8_t h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *len = i;
      return Utf8Kind::kInvalid;
    }
  }
  *len = need + 1;
  return Utf8Kind::kValid;
}

}  // namespace

const std::array<uint32_t, 256>& ByteToCodepoint() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? static_cast<uint32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t DecodeUtf8(std::string_view s, size_t pos, uint32_t* cp) {
  size_t len = 0;
  if (pos >= s.size() || Classify(s, pos, &len) != Utf8Kind::kValid) return 0;
  const auto b0 = static_cast<uint8_t>(s[pos]);
  static constexpr uint8_t kLeadMask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  uint32_t v = b0 & kLeadMask[len];
  for (size_t i = 1; i < len; ++i) v = (v << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3F);
  *cp = v;
  return len;
}

std::string ByteLevelEncode(std::string_view bytes) {
  const auto& table = ByteToCodepoint();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(table[static_cast<uint8_t>(c)], &out);
  return out;
}

std::string ByteLevelDecode(std::string_view piece) {
  static const std::array<int16_t, kTableLimit> inverse = MakeInverse();
  std::string out;
  out.reserve(piece.size());
  size_t pos = 0;
  while (pos < piece.size()) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(piece, pos, &cp);
    if (len == 0) {  // not UTF-8 at all: keep the byte as is
      out.push_back(piece[pos++]);
      continue;
    }
    if (cp < kTableLimit && inverse[cp] >= 0) {
      out.push_back(static_cast<char>(inverse[cp]));
    } else {
      out.append(piece.substr(pos, len));
    }
    pos += len;
  }
  return out;
}

size_t AppendUtf8Lossy(std::string_view in, bool hold_incomplete_tail, std::string* out) {
  size_t pos = 0;
  while (pos < in.size()) {
    // Fast path for ASCII runs, the common case.
    size_t ascii_end = pos;
    while (ascii_end < in.size() && static_cast<uint8_t>(in[ascii_end]) < 0x80) ++ascii_end;
    if (ascii_end > pos) {
      out->append(in.substr(pos, ascii_end - pos));
      pos = ascii_end;
      continue;
    }
    size_t len = 0;
    switch (Classify(in, pos, &len)) {
      case Utf8Kind::kValid:
        out->append(in.substr(pos, len));
        break;
      case Utf8Kind::kTruncated:
        if (hold_incomplete_tail) return pos;
        AppendUtf8(kReplacementChar, out);
        break;
      case Utf8Kind::kInvalid:
      default:
        AppendUtf8(kReplacementChar, out);
        break;
    }
    pos += len;
  }
  return pos;
}

bool IsValidUtf8(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    size_t len = 0;
    if (Classify(s, pos, &len) != Utf8Kind::kValid) return false;
    pos += len;
  }
  return true;
}

}  // namespace kvstream::tok_internal
