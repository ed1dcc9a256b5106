// AKV: three-tier KV cache (design/strategies/akv.md). New K/V land in a hot
// tier (model dtype); past hot_budget the least important hot rows are
// quantized into a warm tier (warm_bits codes, fp16 scale/zero per group);
// warm overflow is re-quantized to cold_bits and kept in host memory (or
// evicted). Attention is one exact softmax over hot + warm, never cold.
// Importance = EMA of the last query's attention share, computed from the
// attention's log-sum-exp (FlashAttention-safe, akv.md §6).
//
// Per layer (Forward): append -> mixed attention -> score update.
// Per step (EndStep, all managed layers in one launch each): select ->
// migrate -> cold path. Tier counters live in device memory so no step ever
// waits on the host; the host reads them one step late.
//
// Cold path on CUDA: migrate copies rows leaving warm into a device stage;
// at the next EndStep (counts known by then) they are re-quantized to
// cold_bits on the compute stream and copied to pinned host memory on a copy
// stream; the host files them into 256-row blocks one step later still.
// On CPU the same twins run at once.
//
// kvstream decisions beyond the spec (tested): tier buffers are sized once at
// Open from prompt + max_new (never more slots than tokens), so bytes held
// are flat over a request; cold_scan_interval > 0 (a scan of cold rows that
// takes the attended ones back to warm, akv_cold_scan.h) runs at the step's
// end on CPU servers and as a pipeline of one stage per step on CUDA;
// tokens_held is the largest hot+warm+cold of any layer.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "engine/kv/akv/akv_buffers.h"
#include "engine/kv/akv/akv_cold.h"
#include "engine/kv/akv/akv_cold_scan.h"
#include "engine/kv/akv/akv_config.h"
#include "engine/kv/kv_cache.h"

namespace kvstream {

struct AkvCudaState;  // events, copy stream, pinned mirrors (akv_cache_cuda.cc)
int64_t AkvCudaStateBytes(const AkvCudaState* s);      // device scratch it holds
int64_t AkvCudaStateHostBytes(const AkvCudaState* s);  // pinned host mirrors it holds
struct AkvCudaStateDeleter {
  void operator()(AkvCudaState* s) const;
};
struct AkvScanCudaState;  // the CUDA cold scan's buffers, stream, events (akv_cold_scan_cuda.cc)
int64_t AkvScanCudaBytes(const AkvScanCudaState* s);      // device
int64_t AkvScanCudaHostBytes(const AkvScanCudaState* s);  // pinned
struct AkvScanCudaStateDeleter {
  void operator()(AkvScanCudaState* s) const;
};

class AkvSequenceCache final : public SequenceCache {
 public:
  AkvSequenceCache(const AkvConfig& config, const AkvPlan& plan, const KvGeometry& g);
  ~AkvSequenceCache() override;
  absl::Status Init();

  // Host work of a prepared (CUDA-graph) decode step: checks the step, sets
  // this step's position in device memory (an H2D copy on the current
  // stream, before the replay), so Attend is device work only.
  absl::Status PrepareDecodeStep(const SeqStep& seq, const StepContext& ctx);
  // Unique for the life of the process (graph keys: addresses get reused).
  uint64_t id() const { return id_; }
  // How many AKV sequences share this step and how many of them run side by
  // side (the strategy sets both each step): EndStep's kernels go to the
  // sequence's own stream only when there are others to overlap with (alone,
  // the fork and join cost ~0.08 ms a step); the decode attention plans its
  // splits for the share of the GPU that side-by-side sequences leave it.
  void set_step_peers(int64_t n, int64_t side_by_side) {
    step_peers_ = n;
    side_by_side_ = std::max<int64_t>(1, std::min(n, side_by_side));
  }

  // Row-major form used by the strategy: q/out [n, H, D], k/v [n, Hkv, D]
  // (rows may be strided, heads and dims packed). With ctx.decode_prepared
  // it only enqueues kernels (it may be running inside a graph capture).
  absl::Status Attend(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                      at::Tensor& out, const SeqStep& seq, const StepContext& ctx);

  // Batched decode (akv_batched_decode.h, CUDA): Attend split in three so
  // that the rows of many sequences append and attend in one launch each.
  // BeginBatchedRow checks this sequence's one-row step, makes its position
  // current and returns its row descriptor at `layer` (device memory, made
  // at Init); after the strategy's append + attention launches,
  // EndBatchedRow updates its scores from its row of that attention's lse
  // (lse_owner: the tensor holding it, kept alive for a score update aside).
  absl::StatusOr<const AkvAttnSeq*> BeginBatchedRow(int64_t layer, const SeqStep& seq, const StepContext& ctx);
  absl::Status EndBatchedRow(int64_t layer, const at::Tensor& q_row, float* lse_row, const at::Tensor& lse_owner);
  // The tier layout of a model layer (managed or dense-kept tiers).
  const AkvLayout& LayoutAt(int64_t layer) const { return (plan_.IsManaged(layer) ? managed_ : dense_).layout; }

  // ---- SequenceCache ----
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext& ctx) override;
  absl::Status EndStep(const SeqStep& seq, const StepContext& ctx) override;
  std::optional<int64_t> PrefillChunk() const override { return config_.prefill_chunk_tokens; }
  int64_t BytesHeld() const override;
  int64_t DeviceBytesHeld() const override;  // BytesHeld less the cold tier (host memory)
  CacheReport Report() const override;

  // For tests: host copies of the tier counters and positions of managed
  // layer `index` (syncs on CUDA; files pending cold rows first).
  struct TierSnapshot {
    std::vector<int32_t> hot_pos, warm_pos, cold_pos;
    int64_t evicted = 0;
    int64_t hot_overflow = 0;
    int64_t promoted = 0;
    int64_t promote_capped = 0;
  };
  TierSnapshot Snapshot(int index);
  const AkvPlan& plan() const { return plan_; }
  const AkvTierSet& managed_tiers() const { return managed_; }
  const at::Tensor& step_positions() const { return pos_; }
  int64_t tokens_seen() const { return seen_; }

 private:
  absl::Status CheckStart(int64_t layer, const SeqStep& seq) const;
  // pos_ = positions of the step's n rows (a prepared step's: made before the replay).
  absl::Status StepPositions(int n, const StepContext& ctx);
  // Score-update parameters of layer `layer` for q's n rows (null: this layer does not score).
  std::optional<AkvScoreParams> ScoreParams(int64_t layer, const at::Tensor& q, int n);
  absl::Status AttendCpu(AkvTierSet& set, int idx, const at::Tensor& q, at::Tensor& out, int n);
  // Select and migrate over every managed layer (same parameters on both paths).
  AkvSelectParams SelectParams() const;
  AkvMigrateParams MigrateParams() const;
  absl::Status EndStepCpu();
  // Cold scan of every managed layer (akv_cold_scan.cc; CPU tiers).
  absl::Status ColdScanCpu();
  // CUDA side (akv_cache_cuda.cc); FailedPrecondition in builds without it.
  absl::Status InitCuda();
  // `ap` appends the step's rows; `sp` (null: no scoring) updates the scores.
  // Decode rows score on a stream of their own, joined back at the last layer.
  absl::Status AttendCuda(int64_t layer, AkvTierSet& set, int idx, const AkvAppendParams& ap,
                          const AkvScoreParams* sp, const at::Tensor& q, at::Tensor& out, int n);
  // The score update of a layer whose attention wrote `lse` (sp null: none),
  // aside for decode rows; at the last layer the aside stream joins back.
  absl::Status ScoreCuda(int64_t layer, const AkvScoreParams* sp, const float* lse, const at::Tensor& q,
                         const at::Tensor& lse_owner);
  absl::Status EndStepCuda();     // EndStepKernels on the sequence's own stream (KVSTREAM_AKV_END_STEP_ASIDE=0: inline)
  absl::Status EndStepKernels();  // cold drain, select, migrate, cold scan stage, counters D2H (current stream)
  // The current stream waits for the last EndStep's kernels and, at a step's
  // start, for score updates a failed step left unjoined.
  absl::Status JoinAside(bool step_start);
  absl::Status DrainCounts();     // reads last step's counters; sends staged rows toward the host
  // CUDA cold scan (akv_cold_scan_cuda.cc): buffers made at Init; each
  // step's score update keeps every managed layer's last query row and lse
  // in them (ColdScanKeep: where, for managed layer `idx`); EndStep runs the
  // next stage of the scan in flight; the rows the append took leave cold
  // once the counters show them (DrainCounts).
  absl::Status InitColdScanCuda();
  std::pair<void*, float*> ColdScanKeep(int idx);
  absl::Status ColdScanCudaStage();
  void DropColdTaken();
  absl::Status FileColdMirror();  // files rows the copy stream brought to pinned memory
  // Files every cold row still in flight and refreshes host_counts_ (CUDA: syncs).
  absl::Status Flush();
  // Counters of the managed layers as last seen by the host.
  const int32_t* HostCounts() const;

  AkvConfig config_;
  AkvPlan plan_;
  KvGeometry geometry_;
  AkvTierSet managed_, dense_;
  std::unique_ptr<AkvColdTier> cold_;
  at::Tensor pos_buf_;      // [StepRows] int32
  at::Tensor pos_host_;     // [1] int32, pinned on CUDA: staging of a prepared step's position
  int64_t prepared_step_ = -1;
  uint64_t id_ = 0;
  at::Tensor pos_;          // [n] view of pos_buf_: positions of this step's new rows
  at::Tensor lse_;          // [max rows, H] fp32
  int64_t step_peers_ = 1;
  int64_t side_by_side_ = 1;  // sequences whose attention runs at once (<= step_peers_)
  int64_t pos_step_ = -1;   // ctx.step pos_ was made for
  int64_t seen_ = 0;        // P: tokens seen (akv.md §4 step 8)
  int64_t step_rows_ = 0;   // rows of the step in progress
  std::vector<int32_t> host_counts_;  // [managed layers, 16], lagged on CUDA
  int64_t cold_saturations_ = 0;
  // Cold scan (cold_scan_interval > 0, CPU): the last query of each managed
  // layer [L, H, D] / [L, H] and whether it was set, the round-robin window
  // start and the rows taken back to warm per layer.
  std::vector<uint8_t> scan_q_;  // [L, H, D] in the tiers' dtype
  std::vector<float> scan_lse_;
  std::vector<bool> scan_has_query_;
  std::vector<int64_t> scan_cursor_, cold_promoted_;
  int64_t steps_since_scan_ = 0, cold_scans_ = 0;
  // The CUDA scan in flight: its stage (akv_cold_scan_cuda.cc), each layer's
  // window (first cold row, rows) and picks (best first).
  int scan_phase_ = 0;
  std::vector<int64_t> scan_first_;
  std::vector<int> scan_window_;
  std::vector<AkvColdPicks> scan_picks_;
  int64_t d2h_bytes_ = 0, h2d_bytes_ = 0;
  double compression_ms_ = 0.0;
  int64_t peak_bytes_ = 0;
  // Declared before cuda_ so it is freed after cuda_'s streams are synced.
  std::unique_ptr<AkvScanCudaState, AkvScanCudaStateDeleter> scan_cuda_;
  std::unique_ptr<AkvCudaState, AkvCudaStateDeleter> cuda_;
};

}  // namespace kvstream
