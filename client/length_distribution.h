// Token-count distributions of `kvstream bench` (--prompt-len, --gen-len):
// "64" (fixed), "uniform:16:128" (integers, both ends included) or
// "normal:64:16" (mean, standard deviation; rounded, clamped to >= 1).
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvstream::client {

class LengthDistribution {
 public:
  enum class Kind { kFixed, kUniform, kNormal };

  // InvalidArgument naming `flag` and the accepted forms on a bad spec.
  static absl::StatusOr<LengthDistribution> Parse(absl::string_view flag, absl::string_view spec);

  int32_t Sample(std::mt19937_64& rng) const;
  // The largest value Sample can return (normal: mean + 4 sd).
  int32_t Max() const;
  Kind kind() const { return kind_; }
  // The spec in canonical form ("uniform:16:128").
  std::string ToString() const;

 private:
  Kind kind_ = Kind::kFixed;
  double a_ = 1;  // fixed value, uniform min, or normal mean
  double b_ = 0;  // uniform max or normal standard deviation
};

}  // namespace kvstream::client
