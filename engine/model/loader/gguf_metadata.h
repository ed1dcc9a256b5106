// Typed access to GGUF metadata. Writers differ in the integer width they
// use for the same key (u32 in llama.cpp, sometimes u64 or i32), so integer
// getters accept any integer type and check the value's range instead.
// Every error names the key, the value or type found and what was expected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/loader/gguf_reader.h"

namespace kvstream::loader {

// nullopt when the key is absent; an error when present with a wrong type or
// a value outside [min, max].
absl::StatusOr<std::optional<int64_t>> GetOptInt(const GgufFile& f, absl::string_view key,
                                                 int64_t min, int64_t max);
// As GetOptInt, but a missing key is an error too.
absl::StatusOr<int64_t> GetInt(const GgufFile& f, absl::string_view key, int64_t min,
                               int64_t max);
// f32 or f64; must be finite and inside [min, max].
absl::StatusOr<std::optional<double>> GetOptFloat(const GgufFile& f, absl::string_view key,
                                                  double min, double max);
absl::StatusOr<std::optional<std::string>> GetOptString(const GgufFile& f, absl::string_view key);
absl::StatusOr<std::optional<bool>> GetOptBool(const GgufFile& f, absl::string_view key);
// An array of strings (nullptr when absent).
absl::StatusOr<const std::vector<std::string>*> GetOptStringArray(const GgufFile& f,
                                                                  absl::string_view key);
// An array of any integer type, widened to int64 (nullopt when absent).
absl::StatusOr<std::optional<std::vector<int64_t>>> GetOptIntArray(const GgufFile& f,
                                                                   absl::string_view key);

}  // namespace kvstream::loader
