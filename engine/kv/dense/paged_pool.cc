#include "engine/kv/dense/paged_pool.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_format.h"

namespace kvstream {
namespace {

int64_t FreeRamBytes() {
  const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

}  // namespace

int64_t PagedKvPool::page_bytes() const {
  return 2 * geometry_.n_layers * geometry_.n_kv_heads * kPageTokens * geometry_.head_dim *
         static_cast<int64_t>(c10::elementSize(geometry_.dtype));
}

absl::Status PagedKvPool::Allocate() {
  if (pool_bytes_ <= 0 && !geometry_.device.is_cpu()) {
    return absl::FailedPreconditionError("KV pool: a device pool needs its size (EngineOptions.kv_pool_bytes)");
  }
  const int64_t bytes = pool_bytes_ > 0 ? pool_bytes_ : FreeRamBytes() / 4;
  // +1: the scratch page is not part of what admission may hand out.
  num_pages_ = std::min<int64_t>(bytes / page_bytes() + 1, INT32_MAX);
  if (num_pages_ < 2) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "KV pool: %d bytes hold no page of %d bytes (pages of %d tokens over %d layers)", bytes, page_bytes(),
        kPageTokens, geometry_.n_layers));
  }
  auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
  storage_ = at::empty({geometry_.n_layers, 2, num_pages_, geometry_.n_kv_heads, kPageTokens, geometry_.head_dim},
                       opts);
  // Page contents are never read before written except the scratch page
  // (padded graph rows read nothing: their length is 0); zero it anyway.
  storage_.select(2, kScratchPage).zero_();
  free_.clear();
  free_.reserve(static_cast<size_t>(num_pages_ - 1));
  for (int64_t p = num_pages_ - 1; p >= 1; --p) free_.push_back(static_cast<int32_t>(p));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> PagedKvPool::Take(int64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  if (!storage_.defined()) {
    if (absl::Status s = Allocate(); !s.ok()) return s;
  }
  if (n > static_cast<int64_t>(free_.size())) {
    return absl::ResourceExhaustedError(absl::StrFormat("KV pool: %d pages wanted, %d of %d free (%d bytes each)",
                                                        n, free_.size(), num_pages_, page_bytes()));
  }
  std::vector<int32_t> out(free_.end() - n, free_.end());
  free_.resize(free_.size() - static_cast<size_t>(n));
  return out;
}

void PagedKvPool::Give(const std::vector<int32_t>& pages) {
  std::lock_guard<std::mutex> l(mu_);
  free_.insert(free_.end(), pages.rbegin(), pages.rend());
}

int64_t PagedKvPool::free_pages() const {
  std::lock_guard<std::mutex> l(mu_);
  return storage_.defined() ? static_cast<int64_t>(free_.size()) : 0;
}

at::Tensor HostToDevice(const std::vector<int64_t>& v, const c10::Device& device, at::ScalarType dtype) {
  return at::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kLong)
      .to(device, dtype, /*non_blocking=*/false, /*copy=*/true);
}

PagedChunk MakePagedChunk(const std::vector<int32_t>& pages, int64_t past, int64_t n, const KvGeometry& g) {
  constexpr int64_t P = PagedKvPool::kPageTokens;
  const int64_t Hkv = g.n_kv_heads;
  std::vector<int64_t> slots(static_cast<size_t>(Hkv * n));
  for (int64_t h = 0; h < Hkv; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = past + i;
      slots[h * n + i] = PagedSlotRow(pages[t / P], h, t % P, Hkv);
    }
  }
  std::vector<int64_t> used(pages.begin(), pages.begin() + (past + n + P - 1) / P);
  return PagedChunk{HostToDevice(slots, g.device), HostToDevice(used, g.device)};
}

void AppendPagedChunk(at::Tensor& k_pool, at::Tensor& v_pool, const PagedChunk& chunk, const at::Tensor& k,
                      const at::Tensor& v) {
  const int64_t D = k.size(-1), rows = chunk.slots.size(0);
  k_pool.view({-1, D}).index_copy_(0, chunk.slots, k.reshape({rows, D}));
  v_pool.view({-1, D}).index_copy_(0, chunk.slots, v.reshape({rows, D}));
}

at::Tensor GatherPagedTokens(const at::Tensor& layer_pool, const at::Tensor& pages, int64_t tokens) {
  // [np, Hkv, P, D] -> [Hkv, np * P, D] -> the first `tokens`.
  const int64_t np = pages.size(0), Hkv = layer_pool.size(1), D = layer_pool.size(3);
  return layer_pool.index_select(0, pages)
      .transpose(0, 1)
      .reshape({Hkv, np * PagedKvPool::kPageTokens, D})
      .narrow(1, 0, tokens);
}

}  // namespace kvstream
