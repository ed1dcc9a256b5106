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

struct SqDeviceArena {
  std::vector<void*> allocs;
  SqDeviceArena() = default;
  SqDeviceArena(const SqDeviceArena&) = delete;
  SqDeviceArena& operator=(const SqDeviceArena&) = delete;
  ~SqDeviceArena() {
    for (void* a : allocs) cudaFree(a);
  }
  void* Alloc(size_t bytes) {
    void* d = nullptr;
    if (cudaMalloc(&d, std::max<size_t>(bytes, 16)) != cudaSuccess) return nullptr;
    allocs.push_back(d);
    return d;
  }
  template <class T>
  T* Up(const std::vector<T>& v) {
    T* d = static_cast<T*>(Alloc(v.size() * sizeof(T)));
    if (d && !v.empty()) cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
    return d;
  }
  // n elements filled with the byte pattern of `poison` (NaN for floats).
  template <class T>
  T* Poisoned(size_t n, T poison) {
    std::vector<T> v(n, poison);
    return Up(v);
  }
};

template <class T>
std::vector<T> Down(const T* d, size_t n) {
  std::vector<T> v(n);
  if (n > 0) cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

// Device copy of a host plan (the view's pointers are device memory).
inline SqPlanView UploadPlan(const SqTestPlan& p, SqDeviceArena* a) {
  SqPlanView v;
  v.width = a->Up(p.width), v.scale = a->Up(p.scale), v.bit_offset = a->Up(p.bit_offset);
  v.d_eff = a->Up(p.d_eff), v.words = p.words;
  return v;
}

}  // namespace kvstream::testing
