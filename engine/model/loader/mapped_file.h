// A read-only memory map of a whole file (GGUF, safetensors), unmapped on
// destruction. Pages load on first touch, so parsing a header does not read
// the tensor data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace kvstream::loader {

class MappedFile {
 public:
  // NotFound if the path does not exist; an empty file maps to an empty span.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  MappedFile(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  const uint8_t* data_;  // nullptr for an empty file
  size_t size_;          // bytes
};

}  // namespace kvstream::loader
