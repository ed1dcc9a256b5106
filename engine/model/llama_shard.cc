// LlamaModel::Shard: the tensor-parallel split of a loaded model (issue 14;
// Megatron-LM's column/row split: Shoeybi et al. 2019, §3). Column-parallel:
// q/k/v heads and the gate/up columns, so attention and SwiGLU run on local
// data; row-parallel: o and down over their input columns, whose partial
// outputs are summed across ranks (LlamaModel::ReduceRowParallel).
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/decode_graphs.h"
#include "engine/model/llama_model.h"
#include "engine/parallel/communicator.h"
#include "engine/parallel/tp_runner.h"
#include "engine/parallel/tp_strategy.h"
#include "engine/status_macros.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <c10/cuda/CUDAStream.h>
#endif

namespace kvstream {
namespace {

void SyncCurrentStream(c10::Device device) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  c10::cuda::getCurrentCUDAStream(device.index()).synchronize();
#else
  (void)device;
#endif
}

}  // namespace

LlamaModel::ShardSpan LlamaModel::ShardOf(int64_t count, int rank, int size) {
  const int64_t base = count / size, extra = count % size;
  return {rank * base + std::min<int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

LlamaModel::ShardSpan LlamaModel::MlpShardOf(int64_t columns, int rank, int size) {
  // Whole units of 128 columns: a share's width stays a multiple of 8 (the
  // fused decode GEMV needs K % 8 == 0 for down, else a step falls back to
  // at::linear: Llama-3's 14336 at TP=3 would give 4779) and tensor-core
  // tiles stay whole. The remainder of a width that is no multiple of 128
  // goes to the last rank.
  constexpr int64_t kUnit = 128;
  const int64_t units = columns / kUnit;
  if (units < size) return ShardOf(columns, rank, size);
  ShardSpan s = ShardOf(units, rank, size);
  s.begin *= kUnit;
  s.count *= kUnit;
  if (rank == size - 1) s.count += columns - units * kUnit;
  return s;
}

absl::StatusOr<ModelConfig> LlamaModel::ShardConfig(const ModelConfig& c, int rank, int size) {
  if (size < 1 || size > c.n_kv_heads) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor_parallel=%d is out of range [1, %d]: each rank needs at least one of the model's %d KV heads", size,
        c.n_kv_heads, c.n_kv_heads));
  }
  if (rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(absl::StrFormat("tensor-parallel rank %d of %d", rank, size));
  }
  const int64_t group = c.n_heads / c.n_kv_heads;  // query heads per KV head (checked by the loader)
  ModelConfig sc = c;
  sc.n_kv_heads = ShardOf(c.n_kv_heads, rank, size).count;
  sc.n_heads = sc.n_kv_heads * group;
  sc.intermediate = MlpShardOf(c.intermediate, rank, size).count;
  return sc;
}

void LlamaModel::AttachTensorParallel(int rank, int size, Communicator* comm) {
  comm_ = size > 1 ? comm : nullptr;
  tp_rank_ = rank;
  tp_size_ = size;
  // Vocab-parallel lm-head: this rank's rows only (a copy, so the full
  // matrix is freed, or with tied embeddings left to the embedding alone).
  // Once: a second attach keeps the share it has.
  if (comm_ == nullptr || lm_head_.w.size(0) != config_.vocab_size) return;
  const ShardSpan v = ShardOf(config_.vocab_size, rank, size);
  const bool tied = lm_head_.w.is_same(embed_);
  const int64_t full_bytes = tied ? 0 : lm_head_.w.nbytes();
  lm_head_.w = lm_head_.w.narrow(0, v.begin, v.count).clone();
  if (lm_head_.b.defined()) lm_head_.b = lm_head_.b.narrow(0, v.begin, v.count).clone();
  lm_head_.packed = nullptr;
  weight_bytes_ += lm_head_.w.nbytes() - full_bytes;
}

absl::StatusOr<at::Tensor> LlamaModel::GatherVocab(const at::Tensor& local) const {
  // NCCL gathers equal counts: every share is padded to rank 0's (the widest)
  // and the padding dropped after.
  const int64_t V = config_.vocab_size, width = ShardOf(V, 0, tp_size_).count, rows = local.size(0);
  at::Tensor send = local.size(1) == width ? local.contiguous()
                                           : at::constant_pad_nd(local, {0, width - local.size(1)}).contiguous();
  at::Tensor all = at::empty({tp_size_, rows, width}, send.options());
  KV_RETURN_IF_ERROR(comm_->AllGather(send, all));
  std::vector<at::Tensor> parts;
  for (int r = 0; r < tp_size_; ++r) parts.push_back(all[r].narrow(1, 0, ShardOf(V, r, tp_size_).count));
  return at::cat(parts, 1);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Shard(int rank, int size, Communicator* comm,
                                                               c10::Device device,
                                                               std::optional<c10::ScalarType> dtype) const {
  const ModelConfig& c = config_;
  auto shard_config = ShardConfig(c, rank, size);
  if (!shard_config.ok()) return shard_config.status();
  if (size > 1 && (comm == nullptr || comm->size() != size || comm->rank() != rank)) {
    return absl::InvalidArgumentError(absl::StrFormat("tensor-parallel shard %d of %d needs a communicator of "
                                                      "that rank and size", rank, size));
  }
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim, I = c.intermediate;
  const int64_t group = H / Hkv;
  const ShardSpan kv = ShardOf(Hkv, rank, size), mlp = MlpShardOf(I, rank, size);
  const int64_t q0 = kv.begin * group * D, qn = kv.count * group * D;
  const int64_t kv0 = kv.begin * D, kvn = kv.count * D;
  const int64_t i0 = mlp.begin, in = mlp.count;

  const c10::ScalarType out_dtype = dtype.value_or(dtype_);
  std::unique_ptr<LlamaModel> m(new LlamaModel(*shard_config, device, out_dtype));
  auto put = [&](const at::Tensor& t) { return t.to(device, out_dtype, false, /*copy=*/true).contiguous(); };
  // q rows, then k rows, then v rows of this rank's heads (qkv is stacked).
  auto qkv_rows = [&](const at::Tensor& t) {
    return at::cat({t.narrow(0, q0, qn), t.narrow(0, H * D + kv0, kvn), t.narrow(0, (H + Hkv) * D + kv0, kvn)}, 0);
  };
  auto gate_up_rows = [&](const at::Tensor& t) { return at::cat({t.narrow(0, i0, in), t.narrow(0, I + i0, in)}, 0); };

  m->embed_ = put(embed_);
  m->norm_ = put(norm_);
  m->lm_head_.w = c.tie_embeddings ? m->embed_ : put(lm_head_.w);
  if (lm_head_.b.defined()) m->lm_head_.b = put(lm_head_.b);
  for (const LayerWeights& L : layers_) {
    LayerWeights S;
    S.attn_norm = put(L.attn_norm);
    S.ffn_norm = put(L.ffn_norm);
    S.qkv.w = put(qkv_rows(L.qkv.w));
    if (L.qkv.b.defined()) S.qkv.b = put(qkv_rows(L.qkv.b));
    S.o.w = put(L.o.w.narrow(1, q0, qn));
    if (L.o.b.defined() && rank == 0) S.o.b = put(L.o.b);  // added once, before the sum
    S.gate_up.w = put(gate_up_rows(L.gate_up.w));
    if (L.gate_up.b.defined()) S.gate_up.b = put(gate_up_rows(L.gate_up.b));
    S.down.w = put(L.down.w.narrow(1, i0, in));
    if (L.down.b.defined() && rank == 0) S.down.b = put(L.down.b);
    for (const at::Tensor* x : {&S.attn_norm, &S.ffn_norm}) m->weight_bytes_ += x->nbytes();
    for (const Linear* x : {&S.qkv, &S.o, &S.gate_up, &S.down}) {
      m->weight_bytes_ += x->w.nbytes() + (x->b.defined() ? x->b.nbytes() : 0);
    }
    m->layers_.push_back(std::move(S));
  }
  m->weight_bytes_ += m->embed_.nbytes() + m->norm_.nbytes() + (c.tie_embeddings ? 0 : m->lm_head_.w.nbytes());
  m->AttachTensorParallel(rank, size, comm);
  if (device.is_cuda()) m->graphs_ = std::make_unique<DecodeGraphs>(*m);
  return m;
}

void LlamaModel::SetTensorParallelPeers(std::vector<LlamaModel*> peers, TpRunner* runner) {
  tp_group_ = {this};
  tp_group_.insert(tp_group_.end(), peers.begin(), peers.end());
  tp_runner_ = runner;
}

absl::StatusOr<StepResult> LlamaModel::ForwardTensorParallel(absl::Span<const SeqInput> seqs,
                                                             const StepContext& ctx) {
  const int size = static_cast<int>(tp_group_.size());
  // Rank r's inputs: the same tokens with rank r's strategy and cache.
  std::vector<std::vector<SeqInput>> per_rank(static_cast<size_t>(size),
                                              std::vector<SeqInput>(seqs.begin(), seqs.end()));
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto* s = dynamic_cast<TpStrategy*>(seqs[i].strategy);
    auto* c = dynamic_cast<TpSequenceCache*>(seqs[i].cache);
    if (s == nullptr || c == nullptr || c->size() != size) {
      return absl::InternalError("tensor-parallel step with a sequence that is not the group's");
    }
    for (int r = 0; r < size; ++r) {
      per_rank[r][i].strategy = s->rank(r);
      per_rank[r][i].cache = c->rank(r);
    }
  }
  std::vector<absl::StatusOr<StepResult>> out(static_cast<size_t>(size), absl::UnknownError("rank did not run"));
  const absl::Status s = tp_runner_->RunAll([&](int r) -> absl::Status {
    LlamaModel& m = *tp_group_[static_cast<size_t>(r)];
    c10::DeviceGuard device(m.device());
    at::InferenceMode inference;  // thread-local: the workers need their own
    try {
      out[r] = m.ForwardLocal(per_rank[r], ctx);
      // The step ends in a host sync on every rank, not only rank 0 (whose
      // logits go to the host): work left on a rank's current stream (the
      // eager all-gather, AKV's tier moves in EndStep) would otherwise race
      // the next step's uploads and graph replay on the rank's graph stream,
      // and NCCL_GRAPH_MIXING_SUPPORT=0 (nccl_group.cc) relies on no
      // uncaptured collective being in flight when a graph is launched.
      if (out[r].ok() && m.device().is_cuda()) SyncCurrentStream(m.device());
    } catch (const c10::Error& e) {
      out[r] = absl::InternalError(absl::StrCat("tensor-parallel rank ", r, ": ", e.what_without_backtrace()));
    }
    return out[r].status();
  });
  if (!s.ok()) return s;
  // A capture that failed on some rank turned that rank's graphs off: turn
  // them off on every rank, or the next step would replay captured
  // collectives on some ranks against uncaptured ones on the others.
  const auto graphs_on = [](const LlamaModel* m) { return m->graphs_ != nullptr && m->graphs_->enabled(); };
  if (std::any_of(tp_group_.begin(), tp_group_.end(), graphs_on) &&
      !std::all_of(tp_group_.begin(), tp_group_.end(), graphs_on)) {
    for (LlamaModel* m : tp_group_) {
      if (m->graphs_ != nullptr) m->graphs_->Disable();
    }
  }
  if (!out[0].ok()) return out[0].status();
  StepResult r = *std::move(out[0]);
  r.stats.reset();  // the host synced above; no run-ahead under tensor parallelism
  return r;
}

absl::Status LlamaModel::ReduceRowParallel(at::Tensor& partial) const {
  return comm_ == nullptr ? absl::OkStatus() : comm_->AllReduceSum(partial);
}

}  // namespace kvstream
