#include "engine/kv/sam_gate/sam_gate_profile.h"

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvstream {
namespace {

constexpr int64_t kMaxProfileBytes = 64 * 1024;  // a profile is a few hundred bytes
constexpr const char* kFormat = "kvstream.sam_gate.profile";

using Value = std::variant<std::string, double, bool>;

// A flat JSON object of string / number / bool values: the only shape a
// profile has. Bounded by the caller's size check; nesting is refused.
class FlatJson {
 public:
  explicit FlatJson(const std::string& s) : s_(s) {}

  absl::Status Parse(std::map<std::string, Value>* out) {
    Ws();
    if (!Eat('{')) return Err("expected '{'");
    Ws();
    if (Eat('}')) return Tail();
    while (true) {
      Ws();
      std::string key;
      if (absl::Status st = String(&key); !st.ok()) return st;
      Ws();
      if (!Eat(':')) return Err("expected ':'");
      Ws();
      Value v;
      if (i_ < s_.size() && s_[i_] == '"') {
        std::string str;
        if (absl::Status st = String(&str); !st.ok()) return st;
        v = str;
      } else if (s_.compare(i_, 4, "true") == 0) {
        i_ += 4;
        v = true;
      } else if (s_.compare(i_, 5, "false") == 0) {
        i_ += 5;
        v = false;
      } else if (i_ < s_.size() && (s_[i_] == '-' || (s_[i_] >= '0' && s_[i_] <= '9'))) {
        const char* begin = s_.c_str() + i_;
        char* end = nullptr;
        const double d = std::strtod(begin, &end);
        if (end == begin) return Err("bad number");
        i_ += static_cast<size_t>(end - begin);
        v = d;
      } else {
        return Err(absl::StrCat("unsupported value for \"", key, "\" (strings, numbers and booleans only)"));
      }
      if (out->count(key)) return Err(absl::StrCat("duplicate key \"", key, "\""));
      (*out)[key] = std::move(v);
      Ws();
      if (Eat(',')) continue;
      if (Eat('}')) return Tail();
      return Err("expected ',' or '}'");
    }
  }

 private:
  absl::Status Tail() {
    Ws();
    return i_ == s_.size() ? absl::OkStatus() : Err("text after the object");
  }
  absl::Status String(std::string* out) {
    if (!Eat('"')) return Err("expected a string");
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c == '\\') {
        if (i_ >= s_.size()) break;
        c = s_[i_++];
        if (c == 'n') c = '\n';
        else if (c == 't') c = '\t';
        else if (c != '"' && c != '\\' && c != '/') return Err("unsupported escape in a string");
      } else if (static_cast<unsigned char>(c) < 0x20) {
        return Err("control character in a string");
      }
      out->push_back(c);
    }
    if (!Eat('"')) return Err("unterminated string");
    return absl::OkStatus();
  }
  void Ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool Eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  absl::Status Err(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("not a flat JSON object at byte ", i_, ": ", what));
  }

  const std::string& s_;
  size_t i_ = 0;
};

std::string JsonString(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x20) continue;
    o += c;
  }
  return o + "\"";
}

}  // namespace

std::string SamGateProfileFileName(const std::string& model_path) {
  return std::filesystem::path(model_path).filename().string() + ".sam_gate.json";
}

std::vector<std::string> SamGateProfileDirs(const std::string& model_path) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("KVSTREAM_PROFILE_DIR"); env != nullptr && *env != '\0') dirs.push_back(env);
  if (model_path.empty()) return dirs;
  const std::filesystem::path dir = std::filesystem::path(model_path).parent_path();
  const std::filesystem::path base = dir.empty() ? std::filesystem::path(".") : dir;
  dirs.push_back((base / ".." / "data" / "profiles").string());
  dirs.push_back(base.string());
  dirs.push_back("data/profiles");
  return dirs;
}

absl::StatusOr<SamGateProfile> ParseSamGateProfile(const std::string& text, const std::string& path,
                                                   const std::string& model_path) {
  auto fail = [&](const std::string& field, const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("SAM-Gate profile ", path, ": field \"", field, "\" ", what));
  };
  std::map<std::string, Value> kv;
  if (absl::Status st = FlatJson(text).Parse(&kv); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("SAM-Gate profile ", path, ": ", st.message()));
  }
  auto str = [&](const std::string& k, std::string* out) -> absl::Status {
    auto it = kv.find(k);
    if (it == kv.end()) return fail(k, "is missing");
    if (!std::holds_alternative<std::string>(it->second)) return fail(k, "must be a string");
    *out = std::get<std::string>(it->second);
    return absl::OkStatus();
  };
  auto num = [&](const std::string& k, double* out, bool required) -> absl::Status {
    auto it = kv.find(k);
    if (it == kv.end()) return required ? fail(k, "is missing") : absl::OkStatus();
    if (!std::holds_alternative<double>(it->second)) return fail(k, "must be a number");
    *out = std::get<double>(it->second);
    if (!std::isfinite(*out)) return fail(k, "must be finite");
    return absl::OkStatus();
  };
  SamGateProfile p;
  p.path = path;
  std::string format;
  if (absl::Status st = str("format", &format); !st.ok()) return st;
  if (format != kFormat) return fail("format", absl::StrCat("must be \"", kFormat, "\" (got \"", format, "\")"));
  double version = 0;
  if (absl::Status st = num("version", &version, true); !st.ok()) return st;
  if (version != 1) return fail("version", absl::StrCat("must be 1 (got ", version, ")"));
  if (absl::Status st = str("model", &p.model); !st.ok()) return st;
  double bytes = -1, prompts = 0;
  if (absl::Status st = num("model_bytes", &bytes, false); !st.ok()) return st;
  if (absl::Status st = num("f_flat_max", &p.f_flat_max, true); !st.ok()) return st;
  if (absl::Status st = num("f_obs_min", &p.f_obs_min, true); !st.ok()) return st;
  if (absl::Status st = num("prompts", &prompts, false); !st.ok()) return st;
  if (kv.count("source")) {
    if (absl::Status st = str("source", &p.source); !st.ok()) return st;
  }
  p.model_bytes = static_cast<int64_t>(bytes);
  p.prompts = static_cast<int64_t>(prompts);
  // The ranges of the knobs these become the defaults of (§5).
  if (p.f_flat_max < 0 || p.f_flat_max > FLT_MAX) return fail("f_flat_max", "must be in [0, FLT_MAX]");
  if (p.f_obs_min < 0 || p.f_obs_min > FLT_MAX) return fail("f_obs_min", "must be in [0, FLT_MAX]");
  if (p.f_flat_max > p.f_obs_min) {
    return fail("f_flat_max", absl::StrCat("must be <= f_obs_min (", p.f_obs_min, "); got ", p.f_flat_max));
  }
  if (!model_path.empty()) {
    const std::string name = std::filesystem::path(model_path).filename().string();
    if (p.model != name) return fail("model", absl::StrCat("names \"", p.model, "\", not this model \"", name, "\""));
    std::error_code ec;
    const auto size = std::filesystem::file_size(model_path, ec);
    if (!ec && p.model_bytes >= 0 && static_cast<int64_t>(size) != p.model_bytes) {
      return fail("model_bytes", absl::StrCat("is ", p.model_bytes, " but ", model_path, " has ", size,
                                              " bytes (calibrated for another file: recalibrate)"));
    }
  }
  return p;
}

absl::StatusOr<std::optional<SamGateProfile>> FindSamGateProfile(const std::string& model_path,
                                                                 const std::vector<std::string>& dirs) {
  if (model_path.empty()) return std::optional<SamGateProfile>();
  const std::string file = SamGateProfileFileName(model_path);
  for (const std::string& d : dirs) {
    const std::filesystem::path path = std::filesystem::path(d) / file;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) continue;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec || size > static_cast<uintmax_t>(kMaxProfileBytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat("SAM-Gate profile ", path.string(), ": larger than ", kMaxProfileBytes, " bytes"));
    }
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) {
      return absl::InvalidArgumentError(absl::StrCat("SAM-Gate profile ", path.string(), ": cannot be read"));
    }
    absl::StatusOr<SamGateProfile> p = ParseSamGateProfile(text.str(), path.string(), model_path);
    if (!p.ok()) return p.status();
    return std::optional<SamGateProfile>(*std::move(p));
  }
  return std::optional<SamGateProfile>();
}

std::string SamGateProfileToJson(const SamGateProfile& p) {
  return absl::StrCat("{\n  \"format\": \"", kFormat, "\",\n  \"version\": 1,\n  \"model\": ", JsonString(p.model),
                      ",\n  \"model_bytes\": ", p.model_bytes, ",\n  \"f_flat_max\": ",
                      absl::StrFormat("%.9g", p.f_flat_max), ",\n  \"f_obs_min\": ",
                      absl::StrFormat("%.9g", p.f_obs_min), ",\n  \"prompts\": ", p.prompts,
                      ",\n  \"source\": ", JsonString(p.source), "\n}\n");
}

}  // namespace kvstream
