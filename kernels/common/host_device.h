// KV_HD marks small helpers that both the CUDA kernels and the CPU twins call.
// In a plain C++ translation unit (no nvcc) it expands to nothing, so headers
// that use it compile without any CUDA header.
#pragma once

#if defined(__CUDACC__)
#define KV_HD __host__ __device__ __forceinline__
#else
#define KV_HD inline
#endif
