// Dynamic shared memory above the 48 KB default is an attribute of the kernel
// function on each device. Setting it is a host call that, made before every
// launch, left the GPU idle between the short launches of a decode step
// (akv_attention_mma.cuh); this sets it once per (kernel, device) and is safe
// to call from any thread and under CUDA graph capture (no allocation, no sync).
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

namespace kvstream {

// Lets `Kernel` launch with up to `bytes` of dynamic shared memory on the
// current device. `bytes` must be the same at every call for one kernel (the
// first call on a device sets it).
template <auto Kernel>
cudaError_t AllowDynamicSmemOnce(int bytes) {
  static std::atomic<uint64_t> devices_set{0};
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  const uint64_t bit = uint64_t{1} << (device & 63);
  if (devices_set.load(std::memory_order_acquire) & bit) return cudaSuccess;
  e = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) devices_set.fetch_or(bit, std::memory_order_release);
  return e;
}

}  // namespace kvstream
