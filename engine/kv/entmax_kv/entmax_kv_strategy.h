// The EntmaxKV strategy (design/strategies/entmax_kv.md), engine side, first
// version: top-k page selection (Quest upper bound) + exact softmax (alpha 1)
// over the selected pages plus the tail.
//
// Storage: the same paged K/V as dense (a PagedKvPool of 16-token blocks, its
// own pool) plus per page, per KV head, per dim key min/max (K1), indexed by
// the physical block like the K/V pool. The request's page_size (8..64) need
// not be the block size: the kernels address tokens through the block table
// (kernels/entmax_kv/entmax_kv_layout.h, EntmaxTokenOffset). Prefill chunks append their K/V,
// recompute the stats of the pages they touched (K1) and attend with SDPA over
// the gathered pages, as dense does. A decode row appends, recomputes its
// tail page's stats (K1), scores historical pages (K2), packs sinks + top-n +
// tail (K3; its dense fallback when the budget covers everything, T <
// min_context, or a layer < dense_layers) and attends with K7. CPU runs the
// kernels' twins, CUDA the launchers; the decode rows of a step that share a
// config are one launch per kernel (ForwardGroup).
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <vector>

#include "engine/kv/dense/paged_pool.h"
#include "engine/kv/entmax_kv/entmax_kv_config.h"
#include "engine/kv/entmax_kv/entmax_kv_decode.h"
#include "engine/kv/kv_cache.h"
#include "engine/runtime/upload_fence.h"

namespace kvstream {

// Per-page key statistics for every layer, indexed by the pool's blocks: one
// slot per block for pages of 16 tokens or more (a page owns its first
// block's slot), two for 8-token pages (EntmaxStatsSlot in the kernels'
// layout). Each slot count is allocated on first use.
class EntmaxStatsStore {
 public:
  explicit EntmaxStatsStore(const KvGeometry& g) : geometry_(g) {}
  // Bytes of one slot's kmin+kmax over all layers.
  int64_t slot_bytes() const;
  // Allocates [L, 2, NB * slots_per_block, Hkv, D] once the pool's block
  // count is known; RESOURCE_EXHAUSTED (naming the bytes) if the device has
  // no room for it beside the pool.
  absl::Status EnsureAllocated(int64_t num_blocks, int slots_per_block);
  at::Tensor kmin(int64_t layer, int slots_per_block) const { return storage_.at(slots_per_block)[layer][0]; }
  at::Tensor kmax(int64_t layer, int slots_per_block) const { return storage_.at(slots_per_block)[layer][1]; }

 private:
  KvGeometry geometry_;
  std::map<int, at::Tensor> storage_;  // by slots per block
};

// Stats slots per pool block for a page size (16-token blocks: 2 at P = 8, else 1).
int EntmaxSlotsPerBlock(int page_size);

class EntmaxKvSequenceCache;

class EntmaxKvStrategy final : public Strategy {
 public:
  // Its own pool: `pool_bytes` (0 on CPU: from free RAM) holds the K/V pages
  // and their stats together.
  EntmaxKvStrategy(const KvGeometry& g, int64_t pool_bytes);
  // Pages from a pool shared with another strategy (dense's on CUDA, so both
  // draw on one KV budget); the stats ([L, 2, NB, Hkv, D], 1/16 of the pool;
  // another 1/8 once an 8-token-page request comes) are allocated beside it
  // when the first request that needs them opens (which fails alone with
  // RESOURCE_EXHAUSTED if they do not fit), outside its bytes. The pool must
  // outlive every sequence opened here.
  EntmaxKvStrategy(const KvGeometry& g, std::shared_ptr<PagedKvPool> shared_pool);

  const char* name() const override { return "entmax_kv"; }
  absl::Status Validate(const StrategyConfig& config) const override;
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  // ceil(tokens / 16) blocks of K/V plus their min/max stats slots.
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens, int64_t max_new_tokens) const override;

  // Decode rows sharing one config: one launch per kernel for all of them
  // (entmax_kv_group.cc); everything else one sequence at a time.
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;
  // CUDA graphs (engine/model/decode_graphs.h): a decode step of sequences
  // with one config does its host work here into fixed buffers; the graph's
  // kernels see a block table of a power-of-two width (part of the key) and
  // launch bounds that hold for any length (EntmaxGraphBoundsFor).
  bool SupportsDecodePrepare() const override { return true; }
  bool CanPrepareDecode(absl::Span<SequenceCache* const> seqs) const override;
  absl::StatusOr<int64_t> PrepareDecode(absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                                        int64_t padded_rows, const StepContext& ctx) override;
  static constexpr int64_t kMaxPreparedRows = 256;

  PagedKvPool& pool() { return *pool_; }

 private:
  // One layer of the prepared step for its rows q [R, H, D], k / v [R, Hkv, D]
  // (R = the prepared rows), out [R, H, D]: device work only.
  absl::Status DecodeRows(int64_t layer, at::Tensor q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out);

  KvGeometry geometry_;
  std::shared_ptr<PagedKvPool> pool_;
  std::shared_ptr<EntmaxStatsStore> stats_;
  // The prepared step (fixed addresses, captured into graphs) and its pinned
  // host images; `staged` marks their last upload.
  struct Prepared {
    at::Tensor table, lens, slots;  // [kMaxPreparedRows * MB_max] / [kMaxPreparedRows] int32, [.. * Hkv] int64
    at::Tensor table_host, lens_host, slots_host;
    int64_t step = -1, rows = 0, max_blocks = 0;
    bool rank_pages = false;
    EntmaxKvConfig config;
  } prepared_;
  UploadFence staged_{"entmax_kv"};
  EntmaxStatsAside aside_;  // K1 of the prepared decode
  // Graph keys: (config scalars, table width, rank_pages) -> a small integer.
  std::map<std::vector<int64_t>, int64_t> keys_;
};

class EntmaxKvSequenceCache final : public SequenceCache {
 public:
  EntmaxKvSequenceCache(std::shared_ptr<PagedKvPool> pool, std::shared_ptr<EntmaxStatsStore> stats,
                        const EntmaxKvConfig& config, int64_t max_tokens);
  ~EntmaxKvSequenceCache() override;

  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext& ctx) override;
  absl::Status EndStep(const SeqStep& seq, const StepContext& ctx) override;
  int64_t BytesHeld() const override;
  CacheReport Report() const override;

  int64_t length() const { return length_; }
  const EntmaxKvConfig& config() const { return config_; }

  // ---- the strategy's batched decode (EntmaxKvStrategy::ForwardGroup) ----
  // Pool blocks to hold `tokens` (taken from the pool as needed).
  absl::Status Grow(int64_t tokens);
  const std::vector<int32_t>& pages() const { return pages_; }  // pool blocks, in token order
  // Counts a decode step at `layer` with T tokens after the append for the
  // report (the host's copy of K3's counts).
  void CountDecode(int64_t layer, int64_t T);

 private:
  // This step's device view (block table, lengths made at layer 0), batch 1.
  EntmaxDecodeRows Rows() const;
  absl::Status UpdateStats(int64_t layer, int recent_pages);
  absl::StatusOr<at::Tensor> Decode(int64_t layer, const at::Tensor& q);

  struct LayerCounters {
    int64_t decode_steps = 0;
    int64_t fallback_steps = 0;
    double pages_selected = 0;  // sum over steps (per head; equal over heads in top-k)
    int64_t pages_min = -1, pages_max = 0;
    double tokens_attended = 0;
    double bytes_read = 0, metadata_read = 0, dense_read = 0;
  };

  std::shared_ptr<PagedKvPool> pool_;
  std::shared_ptr<EntmaxStatsStore> stats_;
  EntmaxKvConfig config_;
  int64_t max_tokens_;
  std::vector<int32_t> pages_;
  int64_t length_ = 0;
  int64_t peak_bytes_ = 0;
  // Made at layer 0 of a step, reused by every layer: append slots [Hkv*n],
  // used pages, block table [1, MB] int32 and seq_lens [1] int32 (T).
  int64_t chunk_index_at_ = -1;
  PagedChunk chunk_;
  at::Tensor block_table_, seq_lens_;
  std::vector<LayerCounters> counters_;
  // [] fp32 on the device (no host sync per step). Checked on the
  // per-sequence path only: batched and prepared rows are alpha 1, whose
  // mass is 1 by construction (K7's fast path normalises each list).
  at::Tensor mass_error_max_;
};

}  // namespace kvstream
