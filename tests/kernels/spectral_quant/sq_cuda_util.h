// Device helpers of the SpectralQuant CUDA tests: an arena of device
// buffers (freed on scope exit), uploads, downloads, NaN/pattern poisoning,
// and a device copy of a SqTestPlan.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/spectral_quant/sq_problem.h"

namespace kvstream::testing {

struct SqDeviceArena : DeviceArena {
  // n elements filled with the byte pattern of `poison` (NaN for floats).
  template <class T>
  T* Poisoned(size_t n, T poison) {
    std::vector<T> v(n, poison);
    return Up(v);
  }
};

// Device copy of a host plan (the view's pointers are device memory).
inline SqPlanView UploadPlan(const SqTestPlan& p, SqDeviceArena* a) {
  SqPlanView v;
  v.width = a->Up(p.width), v.scale = a->Up(p.scale), v.bit_offset = a->Up(p.bit_offset);
  v.d_eff = a->Up(p.d_eff), v.words = p.words;
  return v;
}

}  // namespace kvstream::testing
