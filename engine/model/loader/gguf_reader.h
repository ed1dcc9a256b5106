// GGUF container parser (versions 2 and 3, little-endian).
//
// Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor_count,
// u64 kv_count; kv_count x {string key, u32 value type, value}; tensor_count
// x {string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset};
// padding to `general.alignment`; the data section. A string is u64 length
// + bytes, an array is u32 element type + u64 count + elements.
//
// Policy on tensor offsets (NOTE(loader)): each offset must equal the running
// sum of the previous tensors' sizes, each padded to the alignment, exactly
// as ggml and gguf-py write files. This rules out overlaps and holes with one
// comparison. The data section must hold the last tensor's padding too (both
// writers emit it, and llama.cpp reads it), so any cut of the file is caught;
// bytes after that are ignored.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/loader/ggml_types.h"
#include "engine/model/loader/mapped_file.h"

namespace kvstream::loader {

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
  kCount = 13,
};

absl::string_view GgufTypeName(GgufType t);  // "u32", "array", ...; "?" if unknown

// One metadata value. Scalars are widened into one of three slots by kind
// (unsigned ints and bool -> u, signed ints -> i, f32/f64 -> f; an f32 widens
// to double exactly). An array keeps its element type and fills the vector
// of the matching kind; nested arrays live in `arr`.
struct GgufValue {
  GgufType type = GgufType::kU8;
  GgufType elem_type = GgufType::kU8;  // arrays only
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string str;
  std::vector<uint64_t> arr_u;
  std::vector<int64_t> arr_i;
  std::vector<double> arr_f;
  std::vector<std::string> arr_str;
  std::vector<GgufValue> arr;

  uint64_t ArraySize() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] is the innermost (row) extent
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;      // bytes from the start of the data section
  int64_t n_elements = 0;
  uint64_t n_bytes = 0;
};

// A parsed file. `bytes` views the caller's buffer (not owned): keep it alive.
struct GgufFile {
  uint32_t version = 0;
  uint64_t alignment = 32;
  std::vector<std::pair<std::string, GgufValue>> kv;  // file order
  absl::flat_hash_map<std::string, size_t> kv_index;  // key -> index in kv
  std::vector<GgufTensorInfo> tensors;                 // file order
  absl::flat_hash_map<std::string, size_t> tensor_index;
  uint64_t data_offset = 0;  // absolute offset of the data section
  std::span<const uint8_t> bytes;

  const GgufValue* Find(absl::string_view key) const;
  const GgufTensorInfo* FindTensor(absl::string_view name) const;
  // The tensor's bytes (already checked to lie inside `bytes`).
  std::span<const uint8_t> TensorBytes(const GgufTensorInfo& t) const {
    return bytes.subspan(data_offset + t.offset, t.n_bytes);
  }
};

// Hard caps, checked before anything of that size is allocated. They sit
// far above any real Llama-family file (a 256K vocabulary, ~1000 tensors).
struct GgufLimits {
  uint64_t max_tensors = 1 << 16;
  uint64_t max_kv = 1 << 16;
  uint64_t max_array_elements = 1 << 24;        // one array (a 256K vocab is 2^18)
  uint64_t max_total_array_elements = 1 << 25;  // all arrays of the file together
  uint64_t max_string_bytes = 1 << 26;          // a chat template is a few KB
  int max_array_depth = 4;                      // arrays of arrays of ...
  uint64_t max_nested_arrays = 1 << 16;         // arrays inside arrays, whole file
  uint64_t max_tensor_elements = uint64_t{1} << 40;
};

// Parses and validates the whole header and tensor table of an in-memory
// GGUF file. Tensor data is not touched beyond checking that it lies inside
// `bytes`. Never reads outside `bytes`.
absl::StatusOr<GgufFile> ParseGguf(std::span<const uint8_t> bytes, const GgufLimits& limits = {});

// A GGUF file mapped from disk together with its parse.
struct GgufMapped {
  std::unique_ptr<MappedFile> file;
  GgufFile gguf;  // views file->bytes()
};
absl::StatusOr<GgufMapped> OpenGguf(const std::string& path, const GgufLimits& limits = {});

}  // namespace kvstream::loader
