// Device-side helpers of the LASER-KV CUDA tests: an arena of device buffers,
// uploads/downloads, device copies of LaserTestSegment, and the relative-error
// norm used by the K1/K2 bounds (tests/kernels/sam_gate/sam_cuda_util.h pattern).
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/laser_kv/laser_test_util.h"

namespace kvstream::testing {

struct LaserDeviceArena : DeviceArena {
  // Device buffer of n T filled with the byte `poison`.
  template <class T>
  T* Poisoned(size_t n, uint8_t poison = 0xFF) {
    auto* d = static_cast<T*>(Alloc(n * sizeof(T)));
    if (d) cudaMemset(d, poison, std::max<size_t>(n * sizeof(T), 1));
    return d;
  }
  // The same segment with its k, v and pos on the device (same strides).
  LaserSegment UpSegment(const LaserTestSegment& s) {
    LaserSegment d = s.seg;
    d.k = Up(s.k);
    d.v = Up(s.v);
    d.pos = Up(s.pos);
    return d;
  }
};

// ||got - want|| / ||want|| (0 when both are 0); NaN anywhere gives +inf.
inline double LaserRelErr(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(want[i])) return INFINITY;
    num += std::pow(double(got[i]) - want[i], 2);
    den += double(want[i]) * want[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Bit pattern of a float (so that NaN poison compares unequal to everything).
inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace kvstream::testing
