#include "engine/kv/knob_reader.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvstream {
namespace {

std::string Describe(const KnobValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return absl::StrCat(*i);
  if (const auto* d = std::get_if<double>(&v)) return absl::StrCat(*d);
  if (const auto* b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  return absl::StrCat("'", std::get<std::string>(v), "'");
}

}  // namespace

const KnobValue* KnobReader::Find(const std::string& name) {
  read_.insert(name);
  auto it = config_.knobs.find(name);
  return it == config_.knobs.end() ? nullptr : &it->second;
}

void KnobReader::Fail(const std::string& message) {
  if (status_.ok()) status_ = absl::InvalidArgumentError(message);
}

int64_t KnobReader::Int(const std::string& name, int64_t def, int64_t lo, int64_t hi) {
  const KnobValue* v = Find(name);
  if (v == nullptr) return def;
  const auto* i = std::get_if<int64_t>(v);
  if (i == nullptr || *i < lo || *i > hi) {
    Fail(absl::StrCat(Field(name), " must be an integer in [", lo, ", ", hi, "] (got ", Describe(*v), ")"));
    return def;
  }
  return *i;
}

int64_t KnobReader::OneOf(const std::string& name, int64_t def, std::initializer_list<int64_t> allowed) {
  const KnobValue* v = Find(name);
  if (v == nullptr) return def;
  const auto* i = std::get_if<int64_t>(v);
  if (i != nullptr) {
    for (int64_t a : allowed) {
      if (a == *i) return *i;
    }
  }
  Fail(absl::StrCat(Field(name), " must be one of ", absl::StrJoin(allowed, ", "), " (got ", Describe(*v), ")"));
  return def;
}

double KnobReader::Real(const std::string& name, double def, double lo, bool lo_open, double hi, bool hi_open) {
  const KnobValue* v = Find(name);
  if (v == nullptr) return def;
  double x = NAN;
  if (const auto* d = std::get_if<double>(v)) x = *d;
  if (const auto* i = std::get_if<int64_t>(v)) x = static_cast<double>(*i);
  const bool ok = std::isfinite(x) && (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  if (!ok) {
    Fail(absl::StrCat(Field(name), " must be in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]",
                      " (got ", Describe(*v), ")"));
    return def;
  }
  return x;
}

bool KnobReader::Bool(const std::string& name, bool def) {
  const KnobValue* v = Find(name);
  if (v == nullptr) return def;
  const auto* b = std::get_if<bool>(v);
  if (b == nullptr) {
    Fail(absl::StrCat(Field(name), " must be true or false (got ", Describe(*v), ")"));
    return def;
  }
  return *b;
}

std::string KnobReader::Enum(const std::string& name, const std::string& def, const std::string& prefix,
                             const std::vector<std::string>& allowed) {
  const KnobValue* v = Find(name);
  if (v == nullptr) return def;
  const auto* s = std::get_if<std::string>(v);
  if (s != nullptr) {
    std::string u = absl::AsciiStrToUpper(*s);
    if (u.rfind(prefix, 0) == 0) u = u.substr(prefix.size());
    if (u == "UNSPECIFIED") return def;
    for (const std::string& a : allowed) {
      if (a == u) return u;
    }
  }
  Fail(absl::StrCat(Field(name), " must be one of ", absl::StrJoin(allowed, ", "), " (got ", Describe(*v), ")"));
  return def;
}

absl::Status KnobReader::Finish() const {
  if (!status_.ok()) return status_;
  for (const auto& [name, value] : config_.knobs) {
    if (read_.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("kv_compression.", strategy_, " has no knob '", name, "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvstream
