// Element type of a KV pool / query / output tensor, shared by kernel families.
// An enum (never a string): it comes from the strategy config.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvstream {

enum class KvDType : uint8_t {
  kFp32 = 0,  // IEEE float32
  kFp16 = 1,  // IEEE float16 (__half on the device, uint16_t bits on the host)
  kBf16 = 2,  // bfloat16 (__nv_bfloat16 on the device, uint16_t bits on the host)
  kCount = 3,
};

// Bytes per element; 0 for a value outside the enum.
inline constexpr size_t KvDTypeSize(KvDType t) {
  switch (t) {
    case KvDType::kFp32: return 4;
    case KvDType::kFp16: return 2;
    case KvDType::kBf16: return 2;
    default: return 0;
  }
}

inline constexpr const char* KvDTypeName(KvDType t) {
  switch (t) {
    case KvDType::kFp32: return "fp32";
    case KvDType::kFp16: return "fp16";
    case KvDType::kBf16: return "bf16";
    default: return "invalid";
  }
}
static_assert(static_cast<int>(KvDType::kCount) == 3, "update KvDTypeSize/KvDTypeName");

}  // namespace kvstream
