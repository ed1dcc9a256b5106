// A bounded little-endian reader over bytes we do not trust (GGUF,
// safetensors). Every read is checked against the bytes remaining first, so
// a lying length field turns into an OutOfRange status instead of an overrun.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace kvstream::loader {

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  uint64_t offset() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }
  uint64_t size() const { return bytes_.size(); }

  // Reads one little-endian arithmetic value. `what` names the field for the
  // error message ("tensor_count", "key 'general.name' value").
  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what) {
    static_assert(std::is_arithmetic_v<T>);
    if (remaining() < sizeof(T)) return Short(what, sizeof(T));
    T v;
    // NOTE(loader): memcpy, not a cast: the data has no alignment guarantee.
    // Host is little-endian (x86-64, aarch64), as GGUF and safetensors are.
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // Returns a view of the next `n` bytes and advances past them.
  absl::StatusOr<std::span<const uint8_t>> ReadBytes(uint64_t n, absl::string_view what) {
    if (remaining() < n) return Short(what, n);
    std::span<const uint8_t> out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }

  // GGUF string: u64 byte length, then that many bytes (no terminator).
  // The length is checked against the bytes left before any allocation.
  absl::StatusOr<std::string> ReadGgufString(absl::string_view what) {
    auto len = Read<uint64_t>(what);
    if (!len.ok()) return len.status();
    if (*len > remaining()) {
      return absl::OutOfRangeError(absl::StrFormat(
          "%s: string length %u exceeds the %u bytes left at offset %u", what, *len,
          remaining(), pos_));
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), *len);
    pos_ += *len;
    return s;
  }

  // Moves to an absolute offset no further than the end.
  absl::Status Seek(uint64_t offset, absl::string_view what) {
    if (offset > bytes_.size()) {
      return absl::OutOfRangeError(absl::StrFormat(
          "%s: offset %u is past the end of the %u-byte buffer", what, offset, bytes_.size()));
    }
    pos_ = offset;
    return absl::OkStatus();
  }

 private:
  absl::Status Short(absl::string_view what, uint64_t need) const {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: need %u bytes at offset %u but only %u remain (truncated file?)", what, need, pos_,
        remaining()));
  }

  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
};

}  // namespace kvstream::loader
