// Fixed-size pages of K and V for every layer, shared by all dense sequences
// of a model (vLLM-style paging): a sequence holds a list of page ids, the
// same ids index every layer's pool, pages are taken as the sequence grows
// and all returned when it ends. The pool is one allocation made on first
// use, sized from the KV budget, so the decode kernel (kernels/dense) sees
// one base pointer per layer and a block table.
//
// Page 0 is never handed out: padded rows of a captured CUDA graph write
// their (discarded) K/V there.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/kv_cache.h"

namespace kvstream {

class PagedKvPool {
 public:
  static constexpr int64_t kPageTokens = 16;  // P; the decode kernel takes any P >= 1
  static constexpr int32_t kScratchPage = 0;

  // `pool_bytes` bounds the storage (0, CPU only: 1/4 of the RAM free when
  // first used; the engine sizes CUDA pools from device memory at load).
  // Nothing is allocated until the first Take.
  PagedKvPool(const KvGeometry& g, int64_t pool_bytes) : geometry_(g), pool_bytes_(pool_bytes) {}

  // K+V bytes of one page over all layers.
  int64_t page_bytes() const;
  // Allocates the storage if not yet done; then takes `n` pages.
  // RESOURCE_EXHAUSTED (naming free vs wanted pages) when too few are free.
  absl::StatusOr<std::vector<int32_t>> Take(int64_t n);
  void Give(const std::vector<int32_t>& pages);

  // Layer `layer`'s pools [NB, Hkv, P, D] (valid after the first Take).
  at::Tensor keys(int64_t layer) const { return storage_[layer][0]; }
  at::Tensor values(int64_t layer) const { return storage_[layer][1]; }
  int64_t num_pages() const { return num_pages_; }
  int64_t free_pages() const;
  const KvGeometry& geometry() const { return geometry_; }

 private:
  absl::Status Allocate();

  KvGeometry geometry_;
  int64_t pool_bytes_;
  int64_t num_pages_ = 0;
  at::Tensor storage_;  // [L, 2, NB, Hkv, P, D]
  mutable std::mutex mu_;
  std::vector<int32_t> free_;  // LIFO: recently freed pages are reused first
};

// Row of token `offset` of (page, KV head) in a layer pool viewed as the flat
// [NB * Hkv * P, D] rows that appends scatter into (pages are [Hkv, P, D]).
inline int64_t PagedSlotRow(int64_t page, int64_t head, int64_t offset, int64_t n_kv_heads) {
  return (page * n_kv_heads + head) * PagedKvPool::kPageTokens + offset;
}

// ---- a prompt chunk over the pool (dense and EntmaxKV prefill) --------------
// Indices a paged cache needs to append tokens [past, past + n) of a sequence
// holding `pages` and to gather its first past + n tokens, on `g.device`.
struct PagedChunk {
  at::Tensor slots;  // [Hkv * n] int64 rows of the flat layer pool [NB * Hkv * P, D], head-major
  at::Tensor pages;  // [ceil((past + n) / P)] int64 page ids in sequence order
};
PagedChunk MakePagedChunk(const std::vector<int32_t>& pages, int64_t past, int64_t n, const KvGeometry& g);
// Writes k/v [Hkv, n, D] into one layer's pools at chunk.slots.
void AppendPagedChunk(at::Tensor& k_pool, at::Tensor& v_pool, const PagedChunk& chunk, const at::Tensor& k,
                      const at::Tensor& v);
// The first `tokens` tokens of a layer pool through `pages`: [Hkv, tokens, D].
at::Tensor GatherPagedTokens(const at::Tensor& layer_pool, const at::Tensor& pages, int64_t tokens);
// An owned copy of `v` on `device` as `dtype` (also on CPU, where .to() would alias).
at::Tensor HostToDevice(const std::vector<int64_t>& v, const c10::Device& device, at::ScalarType dtype = at::kLong);

}  // namespace kvstream
