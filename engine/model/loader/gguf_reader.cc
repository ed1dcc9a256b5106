// GGUF parser: header, metadata, tensor table. The order of checks follows
// the file; each error names the key or tensor and the bad vs expected value.
#include "engine/model/loader/gguf_reader.h"

#include <array>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/loader/byte_reader.h"
#include "engine/status_macros.h"

namespace kvstream::loader {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr int kMaxDims = 4;                   // GGML_MAX_DIMS
constexpr uint64_t kMaxTensorNameBytes = 256;

// Smallest encoding of one element of each type, used to reject an array
// count the remaining bytes cannot hold before reserving memory for it.
constexpr std::array<uint64_t, static_cast<size_t>(GgufType::kCount)> kMinBytes = {
    1, 1, 2, 2, 4, 4, 4, 1,  // u8 i8 u16 i16 u32 i32 f32 bool
    8,                       // string: u64 length
    4 + 8,                   // array: u32 type + u64 count
    8, 8, 8,                 // u64 i64 f64
};
static_assert(kMinBytes.size() == static_cast<size_t>(GgufType::kCount));

absl::Status Invalid(absl::string_view ctx, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("gguf: ", ctx, ": ", msg));
}

uint64_t AlignUp(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

absl::StatusOr<GgufType> ReadType(ByteReader& r, absl::string_view ctx) {
  KV_ASSIGN_OR_RETURN(uint32_t t, r.Read<uint32_t>(ctx));
  if (t >= static_cast<uint32_t>(GgufType::kCount)) {
    return Invalid(ctx, absl::StrFormat("value type %u is not a GGUF type (expected 0..%d)", t,
                                        static_cast<int>(GgufType::kCount) - 1));
  }
  return static_cast<GgufType>(t);
}

absl::StatusOr<std::string> ReadString(ByteReader& r, absl::string_view ctx,
                                       const GgufLimits& limits) {
  // Peek the length to apply the cap before ReadGgufString allocates.
  const uint64_t at = r.offset();
  KV_ASSIGN_OR_RETURN(uint64_t len, r.Read<uint64_t>(ctx));
  if (len > limits.max_string_bytes) {
    return Invalid(ctx, absl::StrFormat("string length %u exceeds the cap %u", len,
                                        limits.max_string_bytes));
  }
  KV_RETURN_IF_ERROR(r.Seek(at, ctx));
  return r.ReadGgufString(ctx);
}

// Reads one scalar of type `t` into the widened slot of `v`.
absl::Status ReadScalar(ByteReader& r, GgufType t, absl::string_view ctx, GgufValue& v) {
  switch (t) {
    case GgufType::kU8: { KV_ASSIGN_OR_RETURN(v.u, r.Read<uint8_t>(ctx)); break; }
    case GgufType::kI8: { KV_ASSIGN_OR_RETURN(v.i, r.Read<int8_t>(ctx)); break; }
    case GgufType::kU16: { KV_ASSIGN_OR_RETURN(v.u, r.Read<uint16_t>(ctx)); break; }
    case GgufType::kI16: { KV_ASSIGN_OR_RETURN(v.i, r.Read<int16_t>(ctx)); break; }
    case GgufType::kU32: { KV_ASSIGN_OR_RETURN(v.u, r.Read<uint32_t>(ctx)); break; }
    case GgufType::kI32: { KV_ASSIGN_OR_RETURN(v.i, r.Read<int32_t>(ctx)); break; }
    case GgufType::kU64: { KV_ASSIGN_OR_RETURN(v.u, r.Read<uint64_t>(ctx)); break; }
    case GgufType::kI64: { KV_ASSIGN_OR_RETURN(v.i, r.Read<int64_t>(ctx)); break; }
    case GgufType::kF32: { KV_ASSIGN_OR_RETURN(v.f, r.Read<float>(ctx)); break; }
    case GgufType::kF64: { KV_ASSIGN_OR_RETURN(v.f, r.Read<double>(ctx)); break; }
    case GgufType::kBool: {
      KV_ASSIGN_OR_RETURN(uint8_t b, r.Read<uint8_t>(ctx));
      if (b > 1) return Invalid(ctx, absl::StrFormat("bool byte is %u, expected 0 or 1", b));
      v.u = b;
      break;
    }
    default:
      return absl::InternalError(absl::StrCat("ReadScalar called for ", GgufTypeName(t)));
  }
  return absl::OkStatus();
}

// What is left of the file-wide caps on array elements (GgufLimits).
struct Budget {
  uint64_t elements;  // elements of all arrays together
  uint64_t nested;    // arrays inside arrays
};

absl::StatusOr<GgufValue> ReadValue(ByteReader& r, GgufType t, int depth, absl::string_view ctx,
                                    const GgufLimits& limits, Budget& budget);

absl::Status ReadArray(ByteReader& r, int depth, absl::string_view ctx, const GgufLimits& limits,
                       Budget& budget, GgufValue& v) {
  if (depth >= limits.max_array_depth) {
    return Invalid(ctx, absl::StrFormat("arrays nested %d deep, the cap is %d", depth + 1,
                                        limits.max_array_depth));
  }
  KV_ASSIGN_OR_RETURN(v.elem_type, ReadType(r, ctx));
  KV_ASSIGN_OR_RETURN(uint64_t n, r.Read<uint64_t>(ctx));
  if (n > limits.max_array_elements) {
    return Invalid(ctx, absl::StrFormat("array of %u elements exceeds the cap %u", n,
                                        limits.max_array_elements));
  }
  // NOTE(loader): widening makes a u8 element 8 bytes in memory and a
  // nested array ~200; file-wide budgets keep memory proportional to the
  // file whatever mix of arrays it holds.
  if (n > budget.elements) {
    return Invalid(ctx, absl::StrFormat("%u more array elements exceed the file-wide cap %u", n,
                                        limits.max_total_array_elements));
  }
  budget.elements -= n;
  const uint64_t min_bytes = kMinBytes[static_cast<size_t>(v.elem_type)];
  if (n > r.remaining() / min_bytes) {  // n * min_bytes > remaining, without overflow
    return absl::OutOfRangeError(absl::StrFormat(
        "gguf: %s: array of %u %s elements needs at least %u bytes, only %u remain", ctx, n,
        GgufTypeName(v.elem_type), n * min_bytes, r.remaining()));
  }
  switch (v.elem_type) {
    case GgufType::kString:
      v.arr_str.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        KV_ASSIGN_OR_RETURN(std::string s, ReadString(r, ctx, limits));
        v.arr_str.push_back(std::move(s));
      }
      return absl::OkStatus();
    case GgufType::kArray:
      if (n > budget.nested) {
        return Invalid(ctx, absl::StrFormat("%u nested arrays exceed the file-wide cap %u", n,
                                            limits.max_nested_arrays));
      }
      budget.nested -= n;
      v.arr.reserve(n);
      for (uint64_t k = 0; k < n; ++k) {
        KV_ASSIGN_OR_RETURN(GgufValue e, ReadValue(r, GgufType::kArray, depth + 1, ctx, limits,
                                                   budget));
        v.arr.push_back(std::move(e));
      }
      return absl::OkStatus();
    default:
      break;
  }
  // Numeric and bool elements: read each as a scalar, then move it into the
  // vector of its kind.
  GgufValue e;
  const bool is_float = v.elem_type == GgufType::kF32 || v.elem_type == GgufType::kF64;
  const bool is_signed = v.elem_type == GgufType::kI8 || v.elem_type == GgufType::kI16 ||
                         v.elem_type == GgufType::kI32 || v.elem_type == GgufType::kI64;
  if (is_float) v.arr_f.reserve(n);
  else if (is_signed) v.arr_i.reserve(n);
  else v.arr_u.reserve(n);
  for (uint64_t k = 0; k < n; ++k) {
    KV_RETURN_IF_ERROR(ReadScalar(r, v.elem_type, ctx, e));
    if (is_float) v.arr_f.push_back(e.f);
    else if (is_signed) v.arr_i.push_back(e.i);
    else v.arr_u.push_back(e.u);
  }
  return absl::OkStatus();
}

absl::StatusOr<GgufValue> ReadValue(ByteReader& r, GgufType t, int depth, absl::string_view ctx,
                                    const GgufLimits& limits, Budget& budget) {
  GgufValue v;
  v.type = t;
  if (t == GgufType::kString) {
    KV_ASSIGN_OR_RETURN(v.str, ReadString(r, ctx, limits));
  } else if (t == GgufType::kArray) {
    KV_RETURN_IF_ERROR(ReadArray(r, depth, ctx, limits, budget, v));
  } else {
    KV_RETURN_IF_ERROR(ReadScalar(r, t, ctx, v));
  }
  return v;
}

absl::Status ReadHeader(ByteReader& r, const GgufLimits& limits, GgufFile& f,
                        uint64_t& n_tensors, uint64_t& n_kv) {
  KV_ASSIGN_OR_RETURN(uint32_t magic, r.Read<uint32_t>("magic"));
  if (magic != kGgufMagic) {
    return Invalid("magic", absl::StrFormat("0x%08x, expected 0x%08x (\"GGUF\")", magic,
                                            kGgufMagic));
  }
  KV_ASSIGN_OR_RETURN(f.version, r.Read<uint32_t>("version"));
  if (f.version == 1) {
    return absl::FailedPreconditionError(
        "gguf: version 1 (32-bit counts) is not supported, expected 2 or 3");
  }
  if (f.version != 2 && f.version != 3) {
    // A big-endian v3 file shows its version byte-swapped (0x03000000).
    const bool swapped = (f.version & 0xFFFF) == 0 && (f.version >> 24) <= 3;
    return absl::FailedPreconditionError(absl::StrFormat(
        "gguf: version %u, expected 2 or 3%s", f.version,
        swapped ? " (looks like a big-endian file, which is not supported)" : ""));
  }
  KV_ASSIGN_OR_RETURN(n_tensors, r.Read<uint64_t>("tensor_count"));
  KV_ASSIGN_OR_RETURN(n_kv, r.Read<uint64_t>("kv_count"));
  if (n_tensors > limits.max_tensors) {
    return Invalid("tensor_count", absl::StrFormat("%u exceeds the cap %u", n_tensors,
                                                   limits.max_tensors));
  }
  if (n_kv > limits.max_kv) {
    return Invalid("kv_count", absl::StrFormat("%u exceeds the cap %u", n_kv, limits.max_kv));
  }
  return absl::OkStatus();
}

absl::Status ReadMetadata(ByteReader& r, uint64_t n_kv, const GgufLimits& limits, GgufFile& f) {
  // Each pair needs a key length (8) and a value type (4); reject a count the
  // rest of the file cannot hold before reserving for it.
  if (n_kv > r.remaining() / 12) {
    return absl::OutOfRangeError(absl::StrFormat(
        "gguf: kv_count %u needs at least %u bytes, only %u remain", n_kv, n_kv * 12,
        r.remaining()));
  }
  f.kv.reserve(n_kv);
  Budget budget{limits.max_total_array_elements, limits.max_nested_arrays};
  for (uint64_t k = 0; k < n_kv; ++k) {
    KV_ASSIGN_OR_RETURN(std::string key,
                        ReadString(r, absl::StrFormat("key #%u name", k), limits));
    if (key.empty()) return Invalid(absl::StrFormat("key #%u", k), "empty key name");
    const std::string ctx = absl::StrCat("key '", key, "'");
    if (f.kv_index.contains(key)) return Invalid(ctx, "duplicate key");
    KV_ASSIGN_OR_RETURN(GgufType t, ReadType(r, ctx));
    KV_ASSIGN_OR_RETURN(GgufValue v, ReadValue(r, t, 0, ctx, limits, budget));
    f.kv_index.emplace(key, f.kv.size());
    f.kv.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = f.Find("general.alignment")) {
    if (a->type != GgufType::kU32) {
      return Invalid("key 'general.alignment'",
                     absl::StrCat("type ", GgufTypeName(a->type), ", expected u32"));
    }
    if (a->u == 0 || (a->u & (a->u - 1)) != 0) {
      return Invalid("key 'general.alignment'",
                     absl::StrFormat("%u is not a power of two", a->u));
    }
    f.alignment = a->u;
  }
  return absl::OkStatus();
}

absl::StatusOr<GgufTensorInfo> ReadTensorInfo(ByteReader& r, uint64_t k,
                                              const GgufLimits& limits) {
  GgufTensorInfo t;
  const std::string idx_ctx = absl::StrFormat("tensor #%u name", k);
  KV_ASSIGN_OR_RETURN(t.name, ReadString(r, idx_ctx, limits));
  if (t.name.empty() || t.name.size() > kMaxTensorNameBytes) {
    return Invalid(idx_ctx, absl::StrFormat("length %u, expected 1..%u", t.name.size(),
                                            kMaxTensorNameBytes));
  }
  const std::string ctx = absl::StrCat("tensor '", t.name, "'");
  KV_ASSIGN_OR_RETURN(uint32_t n_dims, r.Read<uint32_t>(ctx));
  if (n_dims < 1 || n_dims > kMaxDims) {
    return Invalid(ctx, absl::StrFormat("n_dims %u, expected 1..%d", n_dims, kMaxDims));
  }
  uint64_t n_elements = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    KV_ASSIGN_OR_RETURN(uint64_t ne, r.Read<uint64_t>(ctx));
    if (ne < 1 || ne > limits.max_tensor_elements) {
      return Invalid(ctx, absl::StrFormat("ne[%u] = %u, expected 1..%u", d, ne,
                                          limits.max_tensor_elements));
    }
    // Both factors are <= the cap (2^40 by default), so check by division.
    if (n_elements > limits.max_tensor_elements / ne) {
      return Invalid(ctx, absl::StrFormat("element count overflows the cap %u at ne[%u] = %u",
                                          limits.max_tensor_elements, d, ne));
    }
    n_elements *= ne;
    t.ne.push_back(static_cast<int64_t>(ne));
  }
  KV_ASSIGN_OR_RETURN(uint32_t type_id, r.Read<uint32_t>(ctx));
  const GgmlTypeTraits* traits = FindGgmlType(type_id);
  if (traits == nullptr) {
    return Invalid(ctx, absl::StrFormat("ggml type %u is not a known type (expected 0..%u "
                                        "excluding removed ids)", type_id, kGgmlTypeCount - 1));
  }
  t.type = static_cast<GgmlType>(type_id);
  if (t.ne[0] % traits->block_size != 0) {
    return Invalid(ctx, absl::StrFormat("row length ne[0] = %d is not a multiple of the %s "
                                        "block size %d", t.ne[0], traits->name,
                                        traits->block_size));
  }
  t.n_elements = static_cast<int64_t>(n_elements);
  // <= 2^40 / 1 * 292 bytes: no overflow in 64 bits.
  t.n_bytes = n_elements / static_cast<uint64_t>(traits->block_size) *
              static_cast<uint64_t>(traits->type_size);
  KV_ASSIGN_OR_RETURN(t.offset, r.Read<uint64_t>(ctx));
  return t;
}

absl::Status ReadTensorTable(ByteReader& r, uint64_t n_tensors, const GgufLimits& limits,
                             GgufFile& f) {
  // Name length + n_dims + one extent + type + offset = 32 bytes at least.
  if (n_tensors > r.remaining() / 32) {
    return absl::OutOfRangeError(absl::StrFormat(
        "gguf: tensor_count %u needs at least %u bytes of tensor table, only %u remain",
        n_tensors, n_tensors * 32, r.remaining()));
  }
  f.tensors.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    KV_ASSIGN_OR_RETURN(GgufTensorInfo t, ReadTensorInfo(r, k, limits));
    if (f.tensor_index.contains(t.name)) {
      return Invalid(absl::StrCat("tensor '", t.name, "'"), "duplicate tensor name");
    }
    f.tensor_index.emplace(t.name, f.tensors.size());
    f.tensors.push_back(std::move(t));
  }
  // The data section starts at the next multiple of the alignment.
  f.data_offset = AlignUp(r.offset(), f.alignment);
  if (f.tensors.empty()) return absl::OkStatus();
  if (f.data_offset > r.size()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "gguf: data section would start at %u, past the end of the %u-byte file",
        f.data_offset, r.size()));
  }
  const uint64_t data_size = r.size() - f.data_offset;
  uint64_t expected = 0;  // aligned running sum, <= data_size + alignment
  for (const GgufTensorInfo& t : f.tensors) {
    if (t.offset != expected) {
      return Invalid(absl::StrCat("tensor '", t.name, "'"), absl::StrFormat(
          "data offset %u, expected %u (previous tensors' sizes, each padded to %u)", t.offset,
          expected, f.alignment));
    }
    if (t.n_bytes > data_size - expected) {
      return absl::OutOfRangeError(absl::StrFormat(
          "gguf: tensor '%s': %u bytes at data offset %u run past the %u-byte data section "
          "(truncated file?)", t.name, t.n_bytes, t.offset, data_size));
    }
    expected = AlignUp(expected + t.n_bytes, f.alignment);
  }
  // Writers pad the last tensor too (llama.cpp reads the padded total), so
  // a file that stops inside that padding was cut short.
  if (expected > data_size) {
    return absl::OutOfRangeError(absl::StrFormat(
        "gguf: data section is %u bytes, expected %u (tensors padded to %u; truncated file?)",
        data_size, expected, f.alignment));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view GgufTypeName(GgufType t) {
  static constexpr std::array<absl::string_view, static_cast<size_t>(GgufType::kCount)> kNames = {
      "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64",
      "f64"};
  const auto i = static_cast<size_t>(t);
  return i < kNames.size() ? kNames[i] : "?";
}

uint64_t GgufValue::ArraySize() const {
  return arr_u.size() + arr_i.size() + arr_f.size() + arr_str.size() + arr.size();
}

const GgufValue* GgufFile::Find(absl::string_view key) const {
  auto it = kv_index.find(key);
  return it == kv_index.end() ? nullptr : &kv[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index.find(name);
  return it == tensor_index.end() ? nullptr : &tensors[it->second];
}

absl::StatusOr<GgufFile> ParseGguf(std::span<const uint8_t> bytes, const GgufLimits& limits) {
  GgufFile f;
  f.bytes = bytes;
  ByteReader r(bytes);
  uint64_t n_tensors = 0, n_kv = 0;
  KV_RETURN_IF_ERROR(ReadHeader(r, limits, f, n_tensors, n_kv));
  KV_RETURN_IF_ERROR(ReadMetadata(r, n_kv, limits, f));
  KV_RETURN_IF_ERROR(ReadTensorTable(r, n_tensors, limits, f));
  return f;
}

absl::StatusOr<GgufMapped> OpenGguf(const std::string& path, const GgufLimits& limits) {
  GgufMapped m;
  KV_ASSIGN_OR_RETURN(m.file, MappedFile::Open(path));
  auto parsed = ParseGguf(m.file->bytes(), limits);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat(path, ": ", parsed.status().message()));
  }
  m.gguf = std::move(parsed).value();
  return m;
}

}  // namespace kvstream::loader
