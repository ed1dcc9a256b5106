// ggml tensor element types as GGUF stores them (the numeric ids of
// ggml.h's `enum ggml_type`), their block geometry, and the dequantizers
// kvstream implements. Every known id has a row in one table, so the GGUF
// reader can validate byte sizes of any known type; only F32, F16, BF16,
// Q8_0, Q4_0, Q4_1, Q4_K and Q6_K can be turned into fp32.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvstream::loader {

// Ids are fixed by the file format; gaps (4, 5, 31-33, 36-38) are types ggml
// removed, which a file must not use.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
  kCount = 42,  // one past the largest id; the traits table has this many rows
};

inline constexpr uint32_t kGgmlTypeCount = static_cast<uint32_t>(GgmlType::kCount);

// Dequantizes `n_blocks` consecutive blocks from `src` (n_blocks * type_size
// bytes) into `dst` (n_blocks * block_size floats). Callers check the sizes.
using DequantFn = void (*)(const uint8_t* src, int64_t n_blocks, float* dst);

struct GgmlTypeTraits {
  absl::string_view name;  // "" for ids ggml removed
  int64_t block_size;     // elements per block; 0 for removed ids
  int64_t type_size;      // bytes per block
  DequantFn dequant;      // nullptr where kvstream has no dequantizer
};

// The row for `id`, or nullptr when `id` is outside the enum or a removed id.
const GgmlTypeTraits* FindGgmlType(uint32_t id);

// Converts `n_elements` elements of a tensor of `type` stored in `src` to
// fp32 in `dst`. `src` must hold exactly the tensor's bytes. Returns
// FailedPrecondition for a type without a dequantizer, InvalidArgument when
// the sizes do not agree.
absl::Status DequantizeToF32(GgmlType type, std::span<const uint8_t> src, std::span<float> dst);

// IEEE half -> float, exact for every input incl. subnormals, inf and NaN
// (NaN payloads are kept, with the quiet bit set as F16C hardware does).
inline float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {  // inf / NaN
    bits = sign | 0x7F800000u | (mant << 13) | (mant ? 0x00400000u : 0u);
  } else if (exp != 0) {  // normal: rebias 15 -> 127
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal half = mant * 2^-24: normalise it, fp32 has the range
    int shift = 0;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      ++shift;
    }
    mant &= 0x3FFu;
    bits = sign | (static_cast<uint32_t>(113 - shift) << 23) | (mant << 13);
  }
  float f;
  static_assert(sizeof(f) == sizeof(bits));
  __builtin_memcpy(&f, &bits, sizeof(f));
  return f;
}

// bfloat16 is the top half of an fp32: the conversion is a shift.
inline float Bf16ToFloat(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace kvstream::loader
