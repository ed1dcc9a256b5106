// Llama-family decoder (Llama 2/3, SmolLM/SmolLM2, Qwen2/2.5, Mistral):
// RMSNorm, RoPE, grouped-query attention through the KV-cache engine, SwiGLU.
// fp32 on CPU, bf16 on CUDA: the same code, dtype and device picked at load.
//
// One Forward runs a batch of sequences of different lengths: prefill chunks
// and decode tokens concatenated into N rows, so the linear layers see one
// [N, hidden] matrix and attention is grouped by strategy.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/decode_graphs.h"
#include "engine/model/fused_block.h"
#include "engine/model/loader/weights.h"
#include "engine/model/model_config.h"
#include "engine/model/packed_matrix.h"
#include "engine/model/rope.h"

namespace kvstream {

// One sequence's input to a step.
struct SeqInput {
  Strategy* strategy = nullptr;    // group key for attention
  SequenceCache* cache = nullptr;  // this sequence's cache
  std::vector<int32_t> tokens;     // new tokens (n >= 1)
  int64_t start_pos = 0;           // absolute position of tokens[0]
  bool is_prompt = false;
  bool last_prompt_chunk = false;
  bool all_logits = false;         // return logits for every new token, not only the last
  // The last n_probe of `tokens` are an ephemeral probe at positions
  // probe_start_pos.. (SeqStep::n_probe): no logits, nothing kept.
  int64_t n_probe = 0;
  int64_t probe_start_pos = 0;
  // Run-ahead decode (decode_graphs.h): tokens = {placeholder}; the row's
  // token is the previous step's argmax, already in the decode graph's token
  // buffer. Every row of such a step has it, in the previous step's order.
  bool token_on_device = false;
};

// One step as the serving loops run it: Forward's logits (on the device,
// ordered after the step), and for a step that went through a decode graph
// its rows' statistics on their way to the host, each row's argmax already
// fed to the next step's token buffer.
struct StepResult {
  at::Tensor logits;
  std::optional<PendingRowStats> stats;
};

// y = x W^T + b. On CPU with a Q4_1/Q8_0 file, `packed` holds the file's
// blocks too and steps of a few rows (decode) read those instead of `w`.
struct Linear {
  at::Tensor w;  // [out, in] in the compute dtype
  at::Tensor b;  // [out] or undefined
  std::shared_ptr<const PackedMatrix> packed;
};

struct LayerWeights {
  at::Tensor attn_norm;  // [hidden]
  Linear qkv;            // [(H + 2 Hkv) D, hidden] q, k, v rows stacked (+ optional bias)
  Linear o;              // [hidden, H D]
  at::Tensor ffn_norm;   // [hidden]
  Linear gate_up;        // [2 I, hidden] gate rows then up rows
  Linear down;           // [hidden, I]
};

// Sequences of one strategy in a step, and where their rows are.
struct AttentionGroup {
  Strategy* strategy = nullptr;
  std::vector<SequenceCache*> caches;
  std::vector<SeqStep> steps;
  std::vector<int64_t> row_offset;  // first row of each sequence in the step's N rows
};

class Communicator;
class TpRunner;

class LlamaModel {
 public:
  ~LlamaModel();
  // Converts the loaded fp32 host weights to `dtype` on `device` (consuming
  // them to keep peak memory low).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(LoadedWeights weights,
                                                            c10::Device device,
                                                            c10::ScalarType dtype);
  // Same architecture, seeded random weights made on `device` (for
  // performance at sizes no file can be carried for).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> CreateSynthetic(const ModelConfig& config,
                                                                     c10::Device device,
                                                                     c10::ScalarType dtype, uint64_t seed);

  // Runs one step. Returns fp32 logits: one row per sequence (its last new
  // token, probe excluded), or n rows for sequences with all_logits, in input
  // order.
  absl::StatusOr<at::Tensor> Forward(absl::Span<const SeqInput> seqs, const StepContext& ctx);
  // Forward without waiting for a decode graph's step (see StepResult).
  absl::StatusOr<StepResult> Step(absl::Span<const SeqInput> seqs, const StepContext& ctx);

  // The pieces of Forward, top to bottom (DecodeGraphs captures them):
  // token ids [N] -> hidden [N, E]; all layers over N rows at `positions`
  // [N] with attention by group; hidden rows -> fp32 logits [rows, V]
  // (a tensor-parallel shard projects its vocab share and gathers the rest).
  at::Tensor Embed(const at::Tensor& tokens) const;
  absl::StatusOr<at::Tensor> Layers(at::Tensor x, const at::Tensor& positions,
                                    absl::Span<const AttentionGroup> groups, const StepContext& ctx);
  absl::StatusOr<at::Tensor> Logits(const at::Tensor& hidden) const;

  // Tensor parallelism (issue 14, Megatron-style): shard `rank` of `size`
  // of this model, on `device`. It holds its share (ShardOf) of the KV
  // heads in k and v, the query heads of their groups in q with the matching
  // input columns of o, and its share of the MLP columns in gate and up with
  // the matching input columns of down; norms and the embedding are
  // replicated, the lm-head's vocab rows split (AttachTensorParallel). Its
  // config counts only its heads and columns, so KV strategies built on its
  // geometry hold its own KV heads only. o and down give partial sums that
  // `comm` (required when size > 1; rank and size must match) all-reduces,
  // two per layer. A CPU file's packed blocks are not carried (shards decode from
  // the compute-dtype weights). Shares are ShardConfig's.
  // dtype: the shard's compute dtype (default: this model's), e.g. a CPU
  // fp32 load split into bf16 shards on GPUs.
  absl::StatusOr<std::unique_ptr<LlamaModel>> Shard(int rank, int size, Communicator* comm, c10::Device device,
                                                    std::optional<c10::ScalarType> dtype = std::nullopt) const;
  // Rank `rank`'s share of `count` items split over `size` ranks: contiguous,
  // the first count % size ranks one more (so rank 0 holds the most).
  struct ShardSpan {
    int64_t begin = 0, count = 0;
  };
  static ShardSpan ShardOf(int64_t count, int rank, int size);
  // The same for MLP columns, in whole units of 128 (llama_shard.cc says why).
  static ShardSpan MlpShardOf(int64_t columns, int rank, int size);
  // The config of rank `rank` of `size` shards of `c`: its KV heads (and the
  // query heads of their groups) by ShardOf, its MLP columns by MlpShardOf. The split may
  // be uneven (SmolLM2-135M's 3 KV heads over 2 GPUs: 2 + 1); a size over
  // the KV-head count is INVALID_ARGUMENT naming the allowed range.
  static absl::StatusOr<ModelConfig> ShardConfig(const ModelConfig& c, int rank, int size);
  // Marks a model built from a shard config (e.g. CreateSynthetic of
  // ShardConfig) as rank `rank` of `size`, summing through comm. With
  // size > 1 it keeps only its share (ShardOf) of the lm-head's vocab rows
  // (vocab-parallel, as Megatron: each rank reads 1/size of the largest
  // matrix of a decode step) and Logits all-gathers the shares.
  void AttachTensorParallel(int rank, int size, Communicator* comm);
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  // Makes this model (rank 0's shard) run every Forward on all ranks:
  // peers[r - 1] is rank r's shard, runner the group's threads. The inputs'
  // strategies and caches must then be the group's (TpStrategy,
  // TpSequenceCache); rank r gets its own. Rank 0's logits are returned
  // (every rank computes the same ones). Not owned.
  void SetTensorParallelPeers(std::vector<LlamaModel*> peers, TpRunner* runner);
  // [rows, V] fp32 from every rank's [rows, its vocab share] (all-gather).
  absl::StatusOr<at::Tensor> GatherVocab(const at::Tensor& local) const;

  const ModelConfig& config() const { return config_; }
  KvGeometry geometry() const;
  c10::Device device() const { return device_; }
  c10::ScalarType dtype() const { return dtype_; }
  int64_t weight_bytes() const { return weight_bytes_; }
  // Bytes one decode step reads: every layer's weights (the packed copy where
  // decode uses it), the final norm and the lm_head; not the embedding table,
  // of which a step reads one row per sequence.
  int64_t decode_weight_bytes() const;
  // Decode steps served by replaying a captured CUDA graph, and graphs held.
  int64_t decode_graph_replays() const;
  int64_t decode_graphs_captured() const;
  // Summed GPU time of those replays, ms (0 without CUDA graphs).
  double decode_graph_gpu_ms() const;

 private:
  LlamaModel(ModelConfig config, c10::Device device, c10::ScalarType dtype);
  // name + expected shape -> the tensor on the device, in the compute dtype.
  using TensorSource = std::function<absl::StatusOr<at::Tensor>(const std::string&, std::vector<int64_t>)>;
  // name -> the file's blocks for that tensor, or nullptr (CPU fp32 only).
  using PackedSource = std::function<const PackedMatrix*(const std::string&)>;
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Build(const ModelConfig& config, const TensorSource& take,
                                                           const PackedSource& packed, c10::Device device,
                                                           c10::ScalarType dtype);
  at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight) const;
  at::Tensor Project(const at::Tensor& x, const Linear& w) const;
  absl::StatusOr<at::Tensor> FusedLayers(at::Tensor x, const at::Tensor& positions,
                                         absl::Span<const AttentionGroup> groups, const StepContext& ctx);
  // The fused (CUDA) path's pending residual add, RMSNorm, projection and
  // the op after it (RoPE after qkv, SwiGLU after gate_up): one kernel for
  // 1-2 decode rows (SkinnyNormLinear), else AddRmsNorm into h, Project and
  // the op's own kernel. x becomes x + delta when delta is defined.
  absl::StatusOr<at::Tensor> NormProject(at::Tensor& x, const at::Tensor& delta, const at::Tensor& norm_w,
                                         const Linear& w, at::Tensor& h,
                                         const ProjectEpilogue& epilogue = {}) const;
  // Sums a row-parallel projection's partial output over the ranks (no-op
  // without tensor parallelism).
  absl::Status ReduceRowParallel(at::Tensor& partial) const;
  // Forward on this model alone (one rank's step).
  absl::StatusOr<StepResult> ForwardLocal(absl::Span<const SeqInput> seqs, const StepContext& ctx);
  // Forward on every rank of the group (SetTensorParallelPeers); never
  // feeds tokens forward (each rank has its own token buffer).
  absl::StatusOr<StepResult> ForwardTensorParallel(absl::Span<const SeqInput> seqs, const StepContext& ctx);

  ModelConfig config_;
  c10::Device device_;
  c10::ScalarType dtype_;
  Rope rope_;
  at::Tensor embed_;    // [V, hidden]
  Linear lm_head_;      // [V, hidden] (the embedding when tied)
  at::Tensor norm_;     // [hidden]
  std::vector<LayerWeights> layers_;
  int64_t weight_bytes_ = 0;
  std::unique_ptr<DecodeGraphs> graphs_;  // CUDA only, made with the model
  Communicator* comm_ = nullptr;          // tensor parallelism (not owned); null when tp_size_ == 1
  int tp_rank_ = 0, tp_size_ = 1;
  std::vector<LlamaModel*> tp_group_;     // rank 0 only: every rank's shard, [0] = this (empty: no TP)
  TpRunner* tp_runner_ = nullptr;
};

}  // namespace kvstream
