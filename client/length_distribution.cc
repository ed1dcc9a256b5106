#include "client/length_distribution.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace kvstream::client {
namespace {

absl::Status BadSpec(absl::string_view flag, absl::string_view spec, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, "='", spec, "': ", why,
                                                 " (expected N, uniform:MIN:MAX or normal:MEAN:STDDEV)"));
}

}  // namespace

absl::StatusOr<LengthDistribution> LengthDistribution::Parse(absl::string_view flag, absl::string_view spec) {
  const std::vector<absl::string_view> parts = absl::StrSplit(spec, ':');
  std::vector<double> numbers;
  for (size_t i = (parts.size() == 1 ? 0 : 1); i < parts.size(); ++i) {
    double v = 0;
    if (!absl::SimpleAtod(parts[i], &v) || !std::isfinite(v)) return BadSpec(flag, spec, "not a number");
    numbers.push_back(v);
  }
  LengthDistribution d;
  if (parts.size() == 1) {
    if (numbers[0] < 1 || numbers[0] != std::floor(numbers[0])) {
      return BadSpec(flag, spec, "a fixed length must be an integer >= 1");
    }
    d.kind_ = Kind::kFixed;
    d.a_ = numbers[0];
    return d;
  }
  if (parts.size() != 3) return BadSpec(flag, spec, "wrong number of fields");
  d.a_ = numbers[0];
  d.b_ = numbers[1];
  if (parts[0] == "uniform") {
    d.kind_ = Kind::kUniform;
    if (d.a_ < 1 || d.b_ < d.a_ || d.a_ != std::floor(d.a_) || d.b_ != std::floor(d.b_)) {
      return BadSpec(flag, spec, "uniform needs integers 1 <= MIN <= MAX");
    }
    return d;
  }
  if (parts[0] == "normal") {
    d.kind_ = Kind::kNormal;
    if (d.a_ < 1 || d.b_ < 0) return BadSpec(flag, spec, "normal needs MEAN >= 1 and STDDEV >= 0");
    return d;
  }
  return BadSpec(flag, spec, absl::StrCat("unknown distribution '", parts[0], "'"));
}

int32_t LengthDistribution::Sample(std::mt19937_64& rng) const {
  switch (kind_) {
    case Kind::kFixed:
      return static_cast<int32_t>(a_);
    case Kind::kUniform:
      return static_cast<int32_t>(
          std::uniform_int_distribution<int64_t>(static_cast<int64_t>(a_), static_cast<int64_t>(b_))(rng));
    case Kind::kNormal: {
      const double v = std::round(std::normal_distribution<double>(a_, b_)(rng));
      return static_cast<int32_t>(std::clamp(v, 1.0, static_cast<double>(Max())));
    }
  }
  return 1;
}

int32_t LengthDistribution::Max() const {
  switch (kind_) {
    case Kind::kFixed:
      return static_cast<int32_t>(a_);
    case Kind::kUniform:
      return static_cast<int32_t>(b_);
    case Kind::kNormal:
      return static_cast<int32_t>(std::ceil(a_ + 4 * b_));
  }
  return 1;
}

std::string LengthDistribution::ToString() const {
  switch (kind_) {
    case Kind::kFixed:
      return absl::StrCat(static_cast<int64_t>(a_));
    case Kind::kUniform:
      return absl::StrCat("uniform:", static_cast<int64_t>(a_), ":", static_cast<int64_t>(b_));
    case Kind::kNormal:
      return absl::StrCat("normal:", absl::StrFormat("%g", a_), ":", absl::StrFormat("%g", b_));
  }
  return "";
}

}  // namespace kvstream::client
