// The EntmaxKV decode launches (entmax_kv.md §4, §7 K1-K3, K7) for a batch of
// sequences that share one EntmaxKvConfig: what EntmaxKvSequenceCache::Decode
// runs for one sequence and EntmaxKvStrategy::ForwardGroup for all decode rows
// of a step (the kernels take B, so a step is one launch each, not one per
// sequence). CUDA launches the kernels on the current stream; CPU runs their
// twins. Never syncs the host.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "absl/status/status.h"
#include "engine/kv/dense/paged_pool.h"
#include "engine/kv/entmax_kv/entmax_kv_config.h"
#include "kernels/entmax_kv/entmax_kv_layout.h"

namespace kvstream {

class EntmaxStatsStore;

// What K3 will do for one sequence of T tokens (after the append) at one
// layer, known on the host from T alone (spec §4 steps 2-3a). Pages are the
// config's page_size; max_pages bounds them (T is clamped to max_pages * P).
struct EntmaxDecodeCounts {
  EntmaxSeqPages pages;   // N, P_hist, tail
  bool fallback = false;  // every page (dense layer, T < min_context, budget >= P_hist)
  int64_t n_hist = 0;     // historical pages attended
  int64_t t_sel = 0;      // tokens attended: n_hist * P + tail
};
EntmaxDecodeCounts EntmaxCountsFor(const EntmaxKvConfig& config, int64_t layer, int64_t T, int64_t max_pages);

// The config fields the decode kernels take as scalars: sequences with equal
// ones can share a launch (and a captured graph).
std::vector<int64_t> EntmaxKernelScalars(const EntmaxKvConfig& c);

// One decode step's device view of B sequences: block table [B, MB] of pool
// blocks and lengths [B] (after this step's append) on the pool's device.
struct EntmaxDecodeRows {
  const int32_t* block_table = nullptr;  // [B, MB] int32
  const int32_t* seq_lens = nullptr;     // [B] int32
  int batch = 0;
  int max_blocks = 0;                    // MB pool blocks (16 tokens), a multiple of page_size / 16
  int page_size = 16;                    // the config's P
  // Pages of P tokens a row can hold: the row length of U and the page lists.
  int64_t max_pages() const { return static_cast<int64_t>(max_blocks) * PagedKvPool::kPageTokens / page_size; }
};
// Pool blocks a table row needs for `tokens`, rounded up to whole pages of
// `page_size` (a 32- or 64-token page spans 2 or 4 blocks).
int64_t EntmaxTableBlocks(int64_t tokens, int page_size);

// What the host fixes for one layer's K2 / K7 launches.
struct EntmaxDecodeBounds {
  int64_t max_sel_tokens = 1;  // >= every row's T_sel: sizes K7's splits and scratch
  bool rank_pages = true;      // some row ranks pages: K2 runs (else K3 reads no U)
};
// Tight bounds from the rows' host lengths T (after the append).
EntmaxDecodeBounds EntmaxBoundsFor(const EntmaxKvConfig& config, int64_t layer, const std::vector<int64_t>& lengths,
                                   int64_t max_pages);
// Bounds that hold for any lengths up to max_pages pages, so a captured graph
// serves every step of its key: `rank_pages` is the step's own (part of the
// key); T_sel is at most budget + P on ranking layers unless min_context keeps
// longer rows dense.
EntmaxDecodeBounds EntmaxGraphBoundsFor(const EntmaxKvConfig& config, int64_t layer, int64_t max_pages,
                                        bool rank_pages);

// Host vector -> device tensor without blocking the host: staged in pinned
// memory (the caching host allocator keeps the block until the copy is done),
// copied on the current stream. On CPU an owned copy.
at::Tensor EntmaxUploadAsync(const std::vector<int64_t>& v, const c10::Device& device);

// K1 over the `recent_pages` last pages of every row (decode: the tail).
absl::Status RunEntmaxPageStats(const PagedKvPool& pool, EntmaxStatsStore& stats, int64_t layer,
                                const EntmaxDecodeRows& rows, int recent_pages);

// K1 of a decode step beside the attention launches: nothing in the step
// reads the tail page's stats (K2 scores historical pages only; the tail is
// always attended), so on CUDA K1 runs on a second stream forked from the
// current one and joined back after K7, and its launch and latency hide
// under K2 (also inside a captured graph: fork and join become edges). CPU:
// inline. Begin and End pair up per layer; one object per strategy.
class EntmaxStatsAside {
 public:
  EntmaxStatsAside() = default;
  ~EntmaxStatsAside();
  EntmaxStatsAside(const EntmaxStatsAside&) = delete;
  EntmaxStatsAside& operator=(const EntmaxStatsAside&) = delete;

  absl::Status Begin(const PagedKvPool& pool, EntmaxStatsStore& stats, int64_t layer, const EntmaxDecodeRows& rows);
  absl::Status End();

 private:
  void* side_ = nullptr;  // cudaStream_t from the pool of the first device used
  void* fork_ = nullptr;  // cudaEvent_t
  void* join_ = nullptr;  // cudaEvent_t
  bool pending_ = false;
};

// K2 (if bounds.rank_pages), K3 and K7 for rows already appended and
// K1-updated. q [B, H, D] and out [B, H, D] with any row / head strides (last
// dim contiguous); `mass` [B, H] fp32 out (K7's selected mass).
absl::Status RunEntmaxDecode(const PagedKvPool& pool, EntmaxStatsStore& stats, const EntmaxKvConfig& config,
                             int64_t layer, const EntmaxDecodeRows& rows, const EntmaxDecodeBounds& bounds,
                             const at::Tensor& q, at::Tensor& out, at::Tensor& mass);

}  // namespace kvstream
