// Division by a run-time constant without the ~20-instruction integer divide:
// the host picks a magic multiplier once (round-up method of Granlund and
// Montgomery), the device then needs one mul.hi, one add and one shift.
// Valid for dividends 0 <= n < 2^31 and divisors 1 <= d < 2^31.
#pragma once

#include <cstdint>

#include "kernels/common/host_device.h"

#if defined(__CUDA_ARCH__)
#define KV_MULHI32(a, b) __umulhi((a), (b))
#else
#define KV_MULHI32(a, b) static_cast<uint32_t>((static_cast<uint64_t>(a) * (b)) >> 32)
#endif

namespace kvstream {

struct FastDivmod {
  uint32_t divisor = 1;
  uint32_t multiplier = 0;  // 0 for d == 1 (then the quotient is n)
  uint32_t shift = 0;       // ceil(log2(d))

  FastDivmod() = default;
  // d must be >= 1; host side only (called by launchers).
  explicit FastDivmod(int d) : divisor(static_cast<uint32_t>(d)) {
    while ((1ull << shift) < divisor) ++shift;
    // m = floor(2^32 * (2^shift - d) / d) + 1, fits in 32 bits for shift <= 31.
    multiplier = static_cast<uint32_t>(((1ull << 32) * ((1ull << shift) - divisor)) / divisor + 1);
    if (divisor == 1) multiplier = 0;
  }

  KV_HD uint32_t Div(uint32_t n) const {
    return (KV_MULHI32(n, multiplier) + n) >> shift;
  }
  // quotient and remainder in one go
  KV_HD void DivMod(uint32_t n, uint32_t* q, uint32_t* r) const {
    *q = Div(n);
    *r = n - *q * divisor;
  }
};

}  // namespace kvstream
