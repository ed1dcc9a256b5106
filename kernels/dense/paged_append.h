// Appends a step's new K and V rows to the paged pools (kernels/dense layout
// [NB, Hkv, P, D], viewed flat as [NB*Hkv*P, D] rows): one kernel for both,
// reading k and v straight out of the fused qkv projection (strided rows), so
// a decode layer needs no reshape copies and no index_copy_ pair.
#pragma once

#include <cstdint>

#include "kernels/common/kv_dtype.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_PAGED_APPEND_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct PagedAppendParams {
  const void* k = nullptr;      // [R, Hkv, D] dtype; element (r,h,d) at r*row_stride + h*D + d
  const void* v = nullptr;      // [R, Hkv, D] dtype, same strides
  const int64_t* slots = nullptr;  // [R*Hkv] flat pool row of (r, h): (page*Hkv + h)*P + offset
  void* k_pool = nullptr;       // [NB*Hkv*P, D] dtype
  void* v_pool = nullptr;       // [NB*Hkv*P, D] dtype
  int64_t row_stride = 0;       // elements between rows of k (and of v); 0 = Hkv*D
  int64_t pool_rows = 0;        // NB*Hkv*P (the twin bounds-checks slots against it)
  int rows = 0;                 // R
  int num_kv_heads = 0;         // Hkv
  int head_dim = 0;             // D, a multiple of 8
  KvDType dtype = KvDType::kBf16;
};

const char* PagedAppendValidate(const PagedAppendParams& p);
// Twin: false (writing nothing) when invalid or a slot is outside the pool.
bool PagedAppendRef(const PagedAppendParams& p);
#if defined(KVSTREAM_PAGED_APPEND_HAS_LAUNCHER)
cudaError_t LaunchPagedAppend(const PagedAppendParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
