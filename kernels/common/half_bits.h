// Host-side conversions between float and the 16-bit storage formats, on raw
// uint16_t bits, for CPU twins, tests and benchmark data (no CUDA headers).
// Rounding: round-to-nearest-even, NaN stays NaN, overflow goes to infinity,
// the same as __float2bfloat16_rn / __float2half_rn on the device.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/kv_dtype.h"

namespace kvstream {

inline float Bf16BitsToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t FloatToBf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;  // +-0
  } else {     // subnormal: normalise
    int e = -1;
    do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
    u = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t FloatToHalfBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {  // result is subnormal or zero: value * 2^24 rounded
    float a;
    std::memcpy(&a, &abs, 4);
    const float scaled = a * 16777216.0f;  // exact for these magnitudes
    uint32_t r = static_cast<uint32_t>(scaled);
    const float frac = scaled - static_cast<float>(r);
    if (frac > 0.5f || (frac == 0.5f && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t v = abs - 0x38000000u;  // rebias exponent 127 -> 15
  v += 0xfffu + ((v >> 13) & 1u);
  return static_cast<uint16_t>(sign | (v >> 13));
}

// Reads element i of a buffer holding `dtype` values, as float.
inline float LoadAsFloat(const void* base, size_t i, KvDType dtype) {
  switch (dtype) {
    case KvDType::kFp32: return static_cast<const float*>(base)[i];
    case KvDType::kFp16: return HalfBitsToFloat(static_cast<const uint16_t*>(base)[i]);
    case KvDType::kBf16: return Bf16BitsToFloat(static_cast<const uint16_t*>(base)[i]);
    default: return 0.0f;
  }
}

// Writes v (rounded to nearest even) into element i of a `dtype` buffer.
inline void StoreFromFloat(void* base, size_t i, float v, KvDType dtype) {
  switch (dtype) {
    case KvDType::kFp32: static_cast<float*>(base)[i] = v; break;
    case KvDType::kFp16: static_cast<uint16_t*>(base)[i] = FloatToHalfBits(v); break;
    case KvDType::kBf16: static_cast<uint16_t*>(base)[i] = FloatToBf16Bits(v); break;
    default: break;
  }
}

}  // namespace kvstream
