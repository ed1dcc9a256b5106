// Shared by the CUDA-vs-twin tests: skip (with the reason) where no CUDA
// device is present (CI, the development machine), assert on CUDA calls, and
// an arena of device buffers with uploads and downloads.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace kvstream::testing {

#define ASSERT_CUDA(expr)                                                      \
  do {                                                                         \
    const cudaError_t err_ = (expr);                                           \
    ASSERT_EQ(err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(err_); \
  } while (0)

inline bool HaveDevice(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    *why = std::string("no CUDA device: ") + (e != cudaSuccess ? cudaGetErrorString(e) : "count is 0");
    return false;
  }
  return true;
}

#define SKIP_WITHOUT_DEVICE()                                          \
  do {                                                                 \
    std::string why_;                                                  \
    if (!::kvstream::testing::HaveDevice(&why_)) GTEST_SKIP() << why_; \
  } while (0)

// Owns device allocations (freed on scope exit). Families add their own
// poisoning and structured uploads on top.
struct DeviceArena {
  std::vector<void*> allocs;
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;
  ~DeviceArena() {
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
};

template <class T>
std::vector<T> Down(const T* d, size_t n) {
  std::vector<T> v(n);
  if (n > 0) cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return v;
}

}  // namespace kvstream::testing
