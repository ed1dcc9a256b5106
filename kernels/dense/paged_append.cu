#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/dense/paged_append.h"

namespace kvstream {
namespace {

// One thread per 16-byte chunk of one (row, head): K and V together.
__global__ void PagedAppendKernel(PagedAppendParams p, int chunks_per_head, int elt_bytes) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = static_cast<int64_t>(p.rows) * p.num_kv_heads * chunks_per_head;
  if (idx >= total) return;
  const int c = static_cast<int>(idx % chunks_per_head);
  const int64_t rh = idx / chunks_per_head;  // r * Hkv + h
  const int64_t r = rh / p.num_kv_heads, h = rh % p.num_kv_heads;
  const int64_t stride = p.row_stride ? p.row_stride : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  const int64_t elt = elt_bytes;
  const int64_t src = (r * stride + h * p.head_dim) * elt + static_cast<int64_t>(c) * 16;
  const int64_t dst = p.slots[rh] * p.head_dim * elt + static_cast<int64_t>(c) * 16;
  *reinterpret_cast<uint4*>(static_cast<char*>(p.k_pool) + dst) =
      *reinterpret_cast<const uint4*>(static_cast<const char*>(p.k) + src);
  *reinterpret_cast<uint4*>(static_cast<char*>(p.v_pool) + dst) =
      *reinterpret_cast<const uint4*>(static_cast<const char*>(p.v) + src);
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace

cudaError_t LaunchPagedAppend(const PagedAppendParams& p, cudaStream_t stream) {
  if (PagedAppendValidate(p) != nullptr) return cudaErrorInvalidValue;
  const int64_t elt = static_cast<int64_t>(KvDTypeSize(p.dtype));
  const int64_t stride = p.row_stride ? p.row_stride : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  if (!Aligned16(p.k) || !Aligned16(p.v) || !Aligned16(p.k_pool) || !Aligned16(p.v_pool) ||
      (stride * elt) % 16 != 0 || (p.head_dim * elt) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (p.rows == 0) return cudaSuccess;
  const int chunks = static_cast<int>(p.head_dim * elt / 16);
  const int64_t total = static_cast<int64_t>(p.rows) * p.num_kv_heads * chunks;
  PagedAppendKernel<<<static_cast<unsigned>((total + 127) / 128), 128, 0, stream>>>(p, chunks, static_cast<int>(elt));
  return cudaGetLastError();
}

}  // namespace kvstream
