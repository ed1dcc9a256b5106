// The one macro every CUDA call in kernels/ goes through: it hands the error
// back to the caller (launchers return cudaError_t; they never exit or print).
#pragma once

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime.h>

#define KV_CUDA_CHECK(expr)                   \
  do {                                        \
    cudaError_t kv_cuda_err_ = (expr);        \
    if (kv_cuda_err_ != cudaSuccess) return kv_cuda_err_; \
  } while (0)
#endif
