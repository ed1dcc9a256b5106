#include <cstring>

#include "kernels/dense/paged_append.h"

namespace kvstream {

const char* PagedAppendValidate(const PagedAppendParams& p) {
  if (p.k == nullptr || p.v == nullptr || p.slots == nullptr || p.k_pool == nullptr || p.v_pool == nullptr) {
    return "k, v, slots, k_pool and v_pool are required";
  }
  if (p.rows < 0 || p.num_kv_heads <= 0) return "rows must be >= 0 and num_kv_heads > 0";
  if (p.head_dim <= 0 || p.head_dim % 8 != 0) return "head_dim must be a positive multiple of 8";
  if (p.row_stride != 0 && p.row_stride < static_cast<int64_t>(p.num_kv_heads) * p.head_dim) {
    return "row_stride must be 0 or >= num_kv_heads * head_dim";
  }
  if (KvDTypeSize(p.dtype) == 0) return "dtype must be fp32, fp16 or bf16";
  return nullptr;
}

bool PagedAppendRef(const PagedAppendParams& p) {
  if (PagedAppendValidate(p) != nullptr) return false;
  const int64_t n = static_cast<int64_t>(p.rows) * p.num_kv_heads;
  for (int64_t i = 0; i < n; ++i) {
    if (p.slots[i] < 0 || p.slots[i] >= p.pool_rows) return false;
  }
  const size_t elt = KvDTypeSize(p.dtype), bytes = static_cast<size_t>(p.head_dim) * elt;
  const int64_t stride = p.row_stride ? p.row_stride : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t h = 0; h < p.num_kv_heads; ++h) {
      const int64_t src = (r * stride + h * p.head_dim) * static_cast<int64_t>(elt);
      const int64_t dst = p.slots[r * p.num_kv_heads + h] * static_cast<int64_t>(bytes);
      std::memcpy(static_cast<char*>(p.k_pool) + dst, static_cast<const char*>(p.k) + src, bytes);
      std::memcpy(static_cast<char*>(p.v_pool) + dst, static_cast<const char*>(p.v) + src, bytes);
    }
  }
  return true;
}

}  // namespace kvstream
