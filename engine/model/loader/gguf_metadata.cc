#include "engine/model/loader/gguf_metadata.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvstream::loader {
namespace {

bool IsUnsigned(GgufType t) {
  return t == GgufType::kU8 || t == GgufType::kU16 || t == GgufType::kU32 || t == GgufType::kU64;
}
bool IsSigned(GgufType t) {
  return t == GgufType::kI8 || t == GgufType::kI16 || t == GgufType::kI32 || t == GgufType::kI64;
}

absl::Status WrongType(absl::string_view key, GgufType found, absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat("gguf: key '", key, "': type ",
                                                 GgufTypeName(found), ", expected ", expected));
}

}  // namespace

absl::StatusOr<std::optional<int64_t>> GetOptInt(const GgufFile& f, absl::string_view key,
                                                 int64_t min, int64_t max) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return std::optional<int64_t>();
  int64_t x;
  if (IsUnsigned(v->type)) {
    if (v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "gguf: key '%s': %u out of range, expected %d..%d", key, v->u, min, max));
    }
    x = static_cast<int64_t>(v->u);
  } else if (IsSigned(v->type)) {
    x = v->i;
  } else {
    return WrongType(key, v->type, "an integer");
  }
  if (x < min || x > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("gguf: key '%s': %d out of range, expected %d..%d", key, x, min, max));
  }
  return std::optional<int64_t>(x);
}

absl::StatusOr<int64_t> GetInt(const GgufFile& f, absl::string_view key, int64_t min,
                               int64_t max) {
  auto v = GetOptInt(f, key, min, max);
  if (!v.ok()) return v.status();
  if (!v->has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("gguf: required key '", key, "' is missing"));
  }
  return **v;
}

absl::StatusOr<std::optional<double>> GetOptFloat(const GgufFile& f, absl::string_view key,
                                                  double min, double max) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return std::optional<double>();
  if (v->type != GgufType::kF32 && v->type != GgufType::kF64) {
    return WrongType(key, v->type, "f32 or f64");
  }
  // Written as !(in range) so that NaN fails too.
  if (!std::isfinite(v->f) || !(v->f >= min && v->f <= max)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "gguf: key '%s': %g out of range, expected %g..%g", key, v->f, min, max));
  }
  return std::optional<double>(v->f);
}

absl::StatusOr<std::optional<std::string>> GetOptString(const GgufFile& f,
                                                        absl::string_view key) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return std::optional<std::string>();
  if (v->type != GgufType::kString) return WrongType(key, v->type, "string");
  return std::optional<std::string>(v->str);
}

absl::StatusOr<std::optional<bool>> GetOptBool(const GgufFile& f, absl::string_view key) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return std::optional<bool>();
  if (v->type != GgufType::kBool) return WrongType(key, v->type, "bool");
  return std::optional<bool>(v->u != 0);
}

absl::StatusOr<const std::vector<std::string>*> GetOptStringArray(const GgufFile& f,
                                                                  absl::string_view key) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return static_cast<const std::vector<std::string>*>(nullptr);
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    return WrongType(key, v->type == GgufType::kArray ? v->elem_type : v->type,
                     "array of string");
  }
  return &v->arr_str;
}

absl::StatusOr<std::optional<std::vector<int64_t>>> GetOptIntArray(const GgufFile& f,
                                                                   absl::string_view key) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return std::optional<std::vector<int64_t>>();
  if (v->type != GgufType::kArray) return WrongType(key, v->type, "array of integers");
  if (IsSigned(v->elem_type)) return std::optional<std::vector<int64_t>>(v->arr_i);
  if (!IsUnsigned(v->elem_type)) {
    return WrongType(key, v->elem_type, "array of integers (element type)");
  }
  std::vector<int64_t> out;
  out.reserve(v->arr_u.size());
  for (uint64_t u : v->arr_u) {
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrFormat("gguf: key '%s': element %u does not fit int64", key, u));
    }
    out.push_back(static_cast<int64_t>(u));
  }
  return std::optional<std::vector<int64_t>>(std::move(out));
}

}  // namespace kvstream::loader
