// The dense baseline over a paged pool (PagedKvPool): what the CUDA server
// runs. Prefill chunks append their K/V to the sequence's pages and attend
// with SDPA over the gathered pages; decode rows of a whole group append with
// one scatter per layer and attend with one launch of our paged decode kernel
// (kernels/dense; on CPU its twin), grouped-query, split along the sequence.
// On CUDA the scatter and the split merge are folded into that launch (the
// kernel's fused append and merge; KVSTREAM_DENSE_FUSED=0 launches the
// separate append and merge kernels instead, for A/B timing).
//
// Decode steps can be prepared ahead (PrepareDecode): all host work (page
// allocation, block table, lengths, append slots) goes into device buffers at
// fixed addresses, so ForwardGroup is then device work only and the model can
// capture all layers of a step in one CUDA graph (engine/model/decode_graphs.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "engine/kv/dense/paged_pool.h"
#include "kernels/dense/dense_decode.h"
#include "engine/kv/kv_cache.h"
#include "engine/runtime/upload_fence.h"

namespace kvstream {

// What the dense decode kernel's split planner needs of the device
// (PlanDenseDecodeSplits): its SM count, and the wave's CTAs per SM from its
// DRAM peak (DenseDecodeSplitCtasPerSm: a full wave where memory is fast).
struct DenseDecodeWave {
  int num_sms = 1;
  int split_ctas_per_sm = kDenseDecodeSplitCtasPerSm;
};
// The current CUDA device's; the defaults in a build without CUDA.
DenseDecodeWave CurrentDenseDecodeWave();

class PagedDenseStrategy final : public Strategy {
 public:
  // Most rows one prepared decode step may have (sizes the fixed buffers).
  static constexpr int64_t kMaxPreparedRows = 256;

  PagedDenseStrategy(const KvGeometry& g, int64_t pool_bytes);

  // ---- Strategy ----
  const char* name() const override { return "dense"; }
  absl::Status Validate(const StrategyConfig& config) const override;
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) override;
  int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens,
                       int64_t max_new_tokens) const override;
  absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                            GroupTensors& t, const StepContext& ctx) override;
  bool SupportsDecodePrepare() const override { return true; }
  absl::StatusOr<int64_t> PrepareDecode(absl::Span<SequenceCache* const> seqs, absl::Span<const SeqStep> steps,
                                        int64_t padded_rows, const StepContext& ctx) override;

  PagedKvPool& pool() { return *pool_; }
  // Shared with strategies that keep dense pages too (EntmaxKV): one KV budget.
  std::shared_ptr<PagedKvPool> shared_pool() const { return pool_; }

 private:
  // One layer of a prepared decode step: rows [0, prepared_rows_) of t.
  absl::Status DecodeLayer(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           at::Tensor& out);
  absl::Status EnsureBuffers();

  KvGeometry geometry_;
  std::shared_ptr<PagedKvPool> pool_;
  int64_t max_pages_per_seq_;  // MB: ceil(context_length / P)
  DenseDecodeWave wave_;  // the split planner's SMs and CTAs per SM (CPU: 1, the default)

  // Prepared decode step (fixed addresses; host staging mirrors them).
  at::Tensor block_table_;    // [kMaxPreparedRows, MB] int32, device
  at::Tensor seq_lens_;       // [kMaxPreparedRows] int32, device
  at::Tensor slots_;          // [kMaxPreparedRows * Hkv] int64 rows of the flat pool view, device
  at::Tensor split_counters_; // [kMaxPreparedRows * H] int32 zeros, device: the kernel's fused merge
  // Host images of the three (pinned on CUDA), uploaded with asynchronous
  // copies instead of pageable ones, which block the host for each. On the
  // H100 this did not shrink the host's gap between graph replays beyond
  // machine noise (0.10-0.19 ms before, 0.19-0.41 ms after on another machine:
  // bench/results/gpu/e2e_decode_pinned_uploads_s10_h100.json): the gap is
  // elsewhere. staged_ marks their last upload: the host waits on it before
  // writing them again.
  at::Tensor table_host_, lens_host_, slots_host_;
  UploadFence staged_{"paged dense"};
  int64_t prepared_step_ = -1;
  int64_t prepared_rows_ = 0;  // padded rows
  int64_t prepared_max_len_ = 0;
  int prepared_splits_ = 1;
};

class PagedDenseSequenceCache final : public SequenceCache {
 public:
  PagedDenseSequenceCache(std::shared_ptr<PagedKvPool> pool, int64_t max_tokens)
      : pool_(std::move(pool)), max_tokens_(max_tokens) {}
  ~PagedDenseSequenceCache() override;

  // Per-sequence path (prefill chunks, or decode outside a prepared step).
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                     const at::Tensor& v, const SeqStep& seq,
                                     const StepContext& ctx) override;
  absl::Status EndStep(const SeqStep& seq, const StepContext& ctx) override;
  int64_t BytesHeld() const override;
  CacheReport Report() const override;

  // Pages to hold `tokens` (taken from the pool as needed).
  absl::Status Grow(int64_t tokens);
  int64_t length() const { return length_; }
  const std::vector<int32_t>& pages() const { return pages_; }

 private:
  std::shared_ptr<PagedKvPool> pool_;
  int64_t max_tokens_;
  std::vector<int32_t> pages_;
  int64_t length_ = 0;  // tokens written in every layer (advanced by EndStep)
  int64_t peak_bytes_ = 0;
  // A prompt chunk's append slots [Hkv*n] and used pages, on the device: the
  // same for every layer of the step, so made at layer 0 only.
  int64_t chunk_index_at_ = -1;  // length_ they were made for
  PagedChunk chunk_;
};

}  // namespace kvstream
