// safetensors reader (huggingface/safetensors, "Format"): u64 little-endian
// header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets":
// [begin, end]}, "__metadata__": {str: str}}, then the byte buffer the
// offsets index. kvstream reads F32, F16 and BF16.
//
// NOTE(loader): like the reference implementation, the entries must tile the
// byte buffer exactly: sorted by begin, each starts where the previous one
// ended and the last ends at the end of the file. That rejects overlaps,
// holes and trailing garbage with one rule.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/loader/weights.h"

namespace kvstream::loader {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "F16", "BF16"
  std::vector<int64_t> shape;  // PyTorch order; [] is a scalar
  int64_t n_elements = 0;
  uint64_t begin = 0, end = 0;  // bytes, relative to the byte buffer
};

struct SafetensorsFile {
  std::vector<SafetensorsEntry> tensors;  // header order is not kept: sorted by begin
  uint64_t data_offset = 0;               // 8 + N
  std::span<const uint8_t> bytes;         // the whole file (not owned)
};

struct SafetensorsLimits {
  uint64_t max_header_bytes = uint64_t{100} << 20;  // the reference caps it at 100 MB
  uint64_t max_tensor_elements = uint64_t{1} << 40;
};

// Parses and validates the header of an in-memory safetensors file. Never
// reads outside `bytes`; never throws (nlohmann::json is used without
// exceptions).
absl::StatusOr<SafetensorsFile> ParseSafetensors(std::span<const uint8_t> bytes,
                                                 const SafetensorsLimits& limits = {});

// Converts one entry to fp32.
absl::StatusOr<HostTensor> ReadSafetensor(const SafetensorsFile& f, const SafetensorsEntry& e);

}  // namespace kvstream::loader
