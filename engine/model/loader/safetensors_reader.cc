#include "engine/model/loader/safetensors_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/loader/byte_reader.h"
#include "engine/model/loader/ggml_types.h"
#include "engine/status_macros.h"
#include "nlohmann/json.hpp"

namespace kvstream::loader {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view what, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("safetensors: ", what, ": ", msg));
}

// Bytes per element of the dtypes kvstream reads; 0 for a dtype the format
// has but kvstream does not convert, -1 for a string that is no dtype.
int DtypeBytes(const std::string& d) {
  if (d == "F32") return 4;
  if (d == "F16" || d == "BF16") return 2;
  static const absl::flat_hash_set<std::string> kOthers = {
      "BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F64", "F8_E5M2",
      "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"};
  return kOthers.contains(d) ? 0 : -1;
}

// Non-negative integer held by a JSON number (signed or unsigned, not float).
bool AsUint(const json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

absl::StatusOr<SafetensorsEntry> ParseEntry(const std::string& name, const json& j,
                                            const SafetensorsLimits& limits) {
  const std::string ctx = absl::StrCat("tensor '", name, "'");
  if (!j.is_object()) return Bad(ctx, "entry is not a JSON object");
  SafetensorsEntry e;
  e.name = name;
  auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string()) return Bad(ctx, "missing string \"dtype\"");
  e.dtype = dt->get<std::string>();
  const int bytes = DtypeBytes(e.dtype);
  if (bytes < 0) return Bad(ctx, absl::StrCat("dtype '", e.dtype, "' is not a safetensors dtype"));
  if (bytes == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "safetensors: ", ctx, ": dtype ", e.dtype, " is not supported, expected F32, F16 or BF16"));
  }
  auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array() || sh->size() > 8) {
    return Bad(ctx, "\"shape\" must be an array of at most 8 extents");
  }
  uint64_t n = 1;
  for (const json& d : *sh) {
    uint64_t ext;
    if (!AsUint(d, ext)) {
      return Bad(ctx, absl::StrCat("an extent is a ", d.type_name(),
                                   ", expected a non-negative integer"));
    }
    if (ext > limits.max_tensor_elements) {
      return Bad(ctx, absl::StrFormat("extent %u exceeds the cap %u", ext,
                                      limits.max_tensor_elements));
    }
    if (ext != 0 && n > limits.max_tensor_elements / ext) {
      return Bad(ctx, absl::StrFormat("element count exceeds the cap %u",
                                      limits.max_tensor_elements));
    }
    n *= ext;
    e.shape.push_back(static_cast<int64_t>(ext));
  }
  e.n_elements = static_cast<int64_t>(n);
  auto off = j.find("data_offsets");
  if (off == j.end() || !off->is_array() || off->size() != 2 || !AsUint((*off)[0], e.begin) ||
      !AsUint((*off)[1], e.end) || e.end < e.begin) {
    return Bad(ctx, "\"data_offsets\" must be [begin, end] with 0 <= begin <= end");
  }
  if (e.end - e.begin != n * static_cast<uint64_t>(bytes)) {
    return Bad(ctx, absl::StrFormat("data_offsets span %u bytes, expected %u (%u %s elements)",
                                    e.end - e.begin, n * bytes, n, e.dtype));
  }
  return e;
}

}  // namespace

absl::StatusOr<SafetensorsFile> ParseSafetensors(std::span<const uint8_t> bytes,
                                                 const SafetensorsLimits& limits) {
  SafetensorsFile f;
  f.bytes = bytes;
  ByteReader r(bytes);
  KV_ASSIGN_OR_RETURN(uint64_t header_len, r.Read<uint64_t>("safetensors: header length"));
  if (header_len > limits.max_header_bytes) {
    return Bad("header length", absl::StrFormat("%u exceeds the cap %u", header_len,
                                                limits.max_header_bytes));
  }
  KV_ASSIGN_OR_RETURN(std::span<const uint8_t> header,
                      r.ReadBytes(header_len, "safetensors: JSON header"));
  f.data_offset = r.offset();
  const uint64_t data_size = r.remaining();

  json j = json::parse(header.begin(), header.end(), /*cb=*/nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("header", "not valid JSON");
  if (!j.is_object()) return Bad("header", "not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) return Bad("__metadata__", "not a JSON object");
      continue;
    }
    // A name given twice keeps its last entry (nlohmann's rule); the bytes
    // of the dropped one then leave a hole that the tiling check rejects.
    KV_ASSIGN_OR_RETURN(SafetensorsEntry e, ParseEntry(it.key(), it.value(), limits));
    f.tensors.push_back(std::move(e));
  }
  std::sort(f.tensors.begin(), f.tensors.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  uint64_t expected = 0;
  for (const SafetensorsEntry& e : f.tensors) {
    if (e.begin != expected) {
      return Bad(absl::StrCat("tensor '", e.name, "'"), absl::StrFormat(
          "data starts at %u, expected %u (entries must tile the buffer: %s)", e.begin,
          expected, e.begin < expected ? "overlap" : "hole"));
    }
    if (e.end > data_size) {
      return absl::OutOfRangeError(absl::StrFormat(
          "safetensors: tensor '%s': data ends at %u, past the %u-byte buffer (truncated "
          "file?)", e.name, e.end, data_size));
    }
    expected = e.end;
  }
  if (expected != data_size) {
    return Bad("byte buffer", absl::StrFormat("%u bytes, but the tensors cover %u", data_size,
                                              expected));
  }
  return f;
}

absl::StatusOr<HostTensor> ReadSafetensor(const SafetensorsFile& f, const SafetensorsEntry& e) {
  HostTensor t;
  t.shape = e.shape;
  t.source_dtype = e.dtype;
  t.data.resize(static_cast<size_t>(e.n_elements));
  std::span<const uint8_t> src = f.bytes.subspan(f.data_offset + e.begin, e.end - e.begin);
  const GgmlType type = e.dtype == "F32"   ? GgmlType::kF32
                        : e.dtype == "F16" ? GgmlType::kF16
                                           : GgmlType::kBF16;
  // Same element conversions as GGUF's F32/F16/BF16 (little-endian, exact).
  absl::Status s = DequantizeToF32(type, src, t.data);
  if (!s.ok()) return Bad(absl::StrCat("tensor '", e.name, "'"), s.message());
  return t;
}

}  // namespace kvstream::loader
