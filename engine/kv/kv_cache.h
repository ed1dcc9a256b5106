// The KV-cache engine interface (architecture.md "The KV-cache engine").
//
// Dimension letters used in shape comments:
//   N   tokens in this step, all sequences of the batch concatenated
//   n   new tokens of one sequence in this step (prefill chunk or 1 at decode)
//   T   tokens a sequence's cache attends over (held + new)
//   H   query heads, Hkv key/value heads (GQA group G = H / Hkv), D head dim
//
// Keys are cached after RoPE at their absolute position; a new token's
// position is always the count of tokens the sequence has seen.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv/cache_report.h"
#include "engine/kv/strategy_config.h"
#include "kernels/common/kv_dtype.h"

namespace kvstream {

// Shapes and placement of the model's attention, shared by every strategy.
struct KvGeometry {
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t context_length = 0;
  c10::ScalarType dtype = c10::kFloat;  // compute/storage dtype of dense K/V (fp32 CPU, bf16 CUDA)
  c10::Device device = c10::Device(c10::kCPU);
  // Bytes a strategy's shared page pool may take (0 = CPU: from free RAM;
  // the engine always sets it on CUDA).
  int64_t kv_pool_bytes = 0;
  // Dense runs over the paged pool and the decode kernel (always on CUDA; on
  // CPU through the kernel's twin when asked, so CI covers that path).
  bool paged_dense = false;
  // The model file ("" for synthetic weights). Strategies with per-model
  // profiles (SAM-Gate thresholds, SpectralQuant .sqcal) look beside it.
  std::string model_path;
  // Tensor parallelism: this geometry is rank tp_rank of tp_size shards;
  // n_heads and n_kv_heads count that rank's heads (LlamaModel::ShardOf: the
  // split may be uneven, rank 0 holding the most).
  int tp_rank = 0, tp_size = 1;
  // ... heads [tp_kv_head_begin, + n_kv_heads) of the model's
  // model_n_kv_heads (strategies with per-model, per-head profiles slice
  // them: SpectralQuant). model_n_kv_heads 0 = n_kv_heads (not sharded).
  int64_t tp_kv_head_begin = 0, model_n_kv_heads = 0;
  int64_t ModelKvHeads() const { return model_n_kv_heads > 0 ? model_n_kv_heads : n_kv_heads; }
  bool ShardsKvHeads() const { return ModelKvHeads() != n_kv_heads; }

  // Bytes one token's K+V take in a dense 16-bit cache over all layers.
  int64_t DenseBytesPerToken16() const { return 2 * n_layers * n_kv_heads * head_dim * 2; }
};

// Element type the kernels take for a torch dtype (fp32 for anything else).
inline KvDType KvDTypeOf(c10::ScalarType t) {
  if (t == c10::kBFloat16) return KvDType::kBf16;
  if (t == c10::kHalf) return KvDType::kFp16;
  return KvDType::kFp32;
}

// One sequence's part of a step.
struct SeqStep {
  int64_t start_pos = 0;      // absolute position of the first new token
  int64_t n_new = 0;          // tokens appended this step
  bool is_prompt = false;     // these are prompt tokens (prefill)
  bool last_prompt_chunk = false;  // ... and the prompt ends with them
  // Ephemeral probe suffix (laser_kv.md §6.2), asked for through
  // SequenceCache::NextPrefill: n_probe more rows after the n_new appended
  // ones, at positions probe_start_pos .. probe_start_pos + n_probe - 1 (not
  // contiguous with the appended tokens). They attend to everything held plus
  // the appended tokens and causally to each other; their K/V are never kept
  // and their logits never computed. 0 for every strategy that does not ask.
  int64_t n_probe = 0;
  int64_t probe_start_pos = 0;

  // Rows of this sequence in the step's N rows: appended tokens, then probe.
  int64_t rows() const { return n_new + n_probe; }
};

// A sequence's next prefill step as its strategy wants it (NextPrefill).
struct PrefillPlan {
  int64_t n_tokens = 0;     // prompt tokens [prompt_done, prompt_done + n_tokens), appended
  int64_t n_probe = 0;      // then prompt tokens [probe_start, probe_start + n_probe) as a probe
  int64_t probe_start = 0;  // prompt index of the probe's first token = its position
};

struct StepContext {
  int64_t step = 0;  // engine step counter
  // The group's decode rows were set up by Strategy::PrepareDecode for this
  // step and are rows [0, padded) of the step: ForwardGroup must do device
  // work only (it may be running inside a CUDA graph capture).
  bool decode_prepared = false;
};

// One per request. Owns that sequence's cache state across all layers.
class SequenceCache {
 public:
  virtual ~SequenceCache() = default;

  // q [H, n, D], k/v [Hkv, n, D] (post-RoPE keys); returns [H, n, D].
  // Appends k/v (in whatever form the strategy keeps) and attends causally
  // over everything the strategy holds plus the new tokens. With a probe
  // suffix, n = seq.rows() and only the first seq.n_new rows are appended.
  virtual absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q,
                                             const at::Tensor& k, const at::Tensor& v,
                                             const SeqStep& seq, const StepContext& ctx) = 0;
  // After every layer ran for this step: migrate tiers, evict, recompress.
  virtual absl::Status EndStep(const SeqStep& seq, const StepContext& ctx) { return absl::OkStatus(); }
  // Prefill chunk size the strategy wants (LASER-KV compresses between chunks).
  virtual std::optional<int64_t> PrefillChunk() const { return std::nullopt; }
  // The next prefill step when `prompt_done` of `prompt_len` prompt tokens are
  // in the cache. nullopt (the default): a chunk of PrefillChunk() (or the
  // engine's) tokens, no probe. A strategy that returns a plan with a probe
  // must handle seq.n_probe in Forward; a plan never ends the prompt with a
  // probe (the runner drops the probe of a last chunk).
  virtual std::optional<PrefillPlan> NextPrefill(int64_t prompt_done, int64_t prompt_len) const {
    return std::nullopt;
  }
  // Bytes held now (device + host), from the buffers really allocated.
  virtual int64_t BytesHeld() const = 0;
  // The part of BytesHeld in the device's memory: what PredictBytes reserves
  // and what the scheduler's KV budget counts. Strategies that keep bytes in
  // host memory (AKV's cold tier) override it.
  virtual int64_t DeviceBytesHeld() const { return BytesHeld(); }
  virtual CacheReport Report() const = 0;
};

// Per-step tensors of one strategy group, all tokens of all sequences of the
// step concatenated (rows of sequences not in the group are untouched).
struct GroupTensors {
  at::Tensor q;    // [N, H, D]
  at::Tensor k;    // [N, Hkv, D] post-RoPE
  at::Tensor v;    // [N, Hkv, D]
  at::Tensor out;  // [N, H, D] written for the group's rows
  std::vector<int64_t> row_offset;  // per group sequence: first row in N
};

// One sequence's rows [row, row + step.n_new) of `t` through its
// SequenceCache::Forward (head-major contract), written back into t.out.
absl::Status ForwardOneSequence(int64_t layer, SequenceCache* seq, const SeqStep& step, int64_t row,
                                GroupTensors& t, const StepContext& ctx);

// One per strategy kind per loaded model.
class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual const char* name() const = 0;
  // Validates the knobs (INVALID_ARGUMENT naming kv_compression.<name>.<knob>
  // and its range) before anything is allocated.
  virtual absl::Status Validate(const StrategyConfig& config) const = 0;
  virtual absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig& config) = 0;
  // Device bytes the request can hold at its largest moment for
  // prompt + max_new tokens. A pure prediction: changes no state.
  virtual int64_t PredictBytes(const StrategyConfig& config, int64_t prompt_tokens,
                               int64_t max_new_tokens) const = 0;
  // Attention for every sequence of this strategy in the step. The default
  // loops over SequenceCache::Forward; a strategy overrides it to launch one
  // kernel for the whole group.
  virtual absl::Status ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                    absl::Span<const SeqStep> steps, GroupTensors& t,
                                    const StepContext& ctx);

  // ---- optional decode fast path (CUDA graphs) ----
  // True if PrepareDecode exists: a decode step (one new token per sequence)
  // can do all its host work up front, leaving ForwardGroup device-only.
  virtual bool SupportsDecodePrepare() const { return false; }
  // Whether these sequences can share one prepared step (a strategy whose
  // kernels take one config per launch says no to mixed configs; the step
  // then runs eagerly).
  virtual bool CanPrepareDecode(absl::Span<SequenceCache* const> seqs) const { return true; }
  // Host work of a decode step for `seqs` as rows [0, seqs.size()), padded
  // with rows that attend to nothing up to `padded_rows`. Returns a key:
  // prepared steps with equal (padded_rows, key) run the same device work,
  // so one captured graph replays for all of them.
  virtual absl::StatusOr<int64_t> PrepareDecode(absl::Span<SequenceCache* const> seqs,
                                                absl::Span<const SeqStep> steps, int64_t padded_rows,
                                                const StepContext& ctx) {
    return absl::UnimplementedError(std::string(name()) + " has no prepared decode path");
  }
};

}  // namespace kvstream
