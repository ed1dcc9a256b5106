// Shared by the CUDA-vs-twin tests: skip (with the reason) where no CUDA
// device is present (CI, the development machine), and assert on CUDA calls.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <string>

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

}  // namespace kvstream::testing
