#include "engine/model/llama_model.h"

#include <ATen/ATen.h>

#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/env_switch.h"
#include "engine/model/decode_graphs.h"
#include "engine/model/fused_block.h"
#include "engine/model/tuned_linear.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

// Moves one host tensor to the device, checking its shape; frees the host copy.
absl::StatusOr<at::Tensor> Take(std::map<std::string, HostTensor>& tensors, const std::string& name,
                                std::vector<int64_t> shape, c10::Device device,
                                c10::ScalarType dtype) {
  auto it = tensors.find(name);
  if (it == tensors.end()) return absl::InvalidArgumentError(absl::StrCat("weights lack tensor ", name));
  HostTensor& h = it->second;
  if (h.shape != shape) {
    return absl::InvalidArgumentError(absl::StrFormat("tensor %s has shape [%s], expected [%s]", name,
                                                      absl::StrJoin(h.shape, ","),
                                                      absl::StrJoin(shape, ",")));
  }
  at::Tensor t = at::from_blob(h.data.data(), shape, at::kFloat).to(device, dtype, false, true);
  tensors.erase(it);
  return t;
}

// Steps of at most this many rows read packed blocks; larger ones (prefill)
// are compute-bound and go to ATen's fp32 GEMM. Measured on the 2-core EPYC
// (1 thread): the 49152x576 lm_head at n = 1/8/16/32 rows takes 3.3/11.4/
// 22.8/45.0 ms packed vs 10.4/27.9/38.7/51.7 ms fp32; cache-resident small
// matrices cross over near n = 16.
constexpr int64_t kPackedMaxRows = 16;

// KVSTREAM_PACKED_WEIGHTS=0 keeps CPU decode on the fp32 copies (A/B runs).
bool PackedWeightsEnabled() {
  return EnvSwitchOn("KVSTREAM_PACKED_WEIGHTS");
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(LoadedWeights w, c10::Device device,
                                                               c10::ScalarType dtype) {
  // The file's blocks serve CPU fp32 decode; elsewhere they are dropped.
  std::map<std::string, PackedMatrix> packed;
  const bool use_packed = device.is_cpu() && dtype == at::kFloat && PackedWeightsEnabled();
  for (auto& [name, t] : w.tensors) {
    if (use_packed && !t.packed.empty() && t.shape.size() == 2) {
      KV_ASSIGN_OR_RETURN(PackedMatrix m, MakePackedMatrix(t.packed_type, t.shape[0], t.shape[1],
                                                           std::move(t.packed)));
      packed.emplace(name, std::move(m));
    }
    t.packed = {};
  }
  return Build(w.config, [&](const std::string& name, std::vector<int64_t> shape) {
    return Take(w.tensors, name, std::move(shape), device, dtype);
  }, [&](const std::string& name) -> const PackedMatrix* {
    auto it = packed.find(name);
    return it == packed.end() ? nullptr : &it->second;
  }, device, dtype);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::CreateSynthetic(const ModelConfig& config,
                                                                        c10::Device device,
                                                                        c10::ScalarType dtype, uint64_t seed) {
  // Seeded random weights made on the device itself (an 8B model's fp32
  // host copy would not fit, nor travel): N(0, 0.02) matrices as in Llama's
  // initialisation, unit norm weights. Values are meaningless; shapes, bytes
  // and timings are real.
  at::manual_seed(seed);
  return Build(config, [&](const std::string& name, std::vector<int64_t> shape)
                           -> absl::StatusOr<at::Tensor> {
    auto opts = at::TensorOptions().device(device).dtype(dtype);
    if (shape.size() == 1 && name.find("norm") != std::string::npos) return at::ones(shape, opts);
    return at::randn(shape, opts).mul_(0.02);
  }, [](const std::string&) -> const PackedMatrix* { return nullptr; }, device, dtype);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Build(const ModelConfig& c, const TensorSource& take,
                                                              const PackedSource& packed, c10::Device device,
                                                              c10::ScalarType dtype) {
  // Packed copy of a (possibly stacked) weight; null when any part is missing.
  auto pack = [&](std::initializer_list<std::string> names) -> std::shared_ptr<const PackedMatrix> {
    std::vector<const PackedMatrix*> parts;
    for (const std::string& n : names) parts.push_back(packed(n));
    PackedMatrix m = StackPackedRows(parts);
    if (m.rows == 0) return nullptr;
    return std::make_shared<const PackedMatrix>(std::move(m));
  };
  if (c.n_layers <= 0 || c.hidden <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
      c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0 || c.vocab_size <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "unsupported model shape: layers=%d hidden=%d heads=%d kv_heads=%d head_dim=%d vocab=%d",
        c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size));
  }
  std::unique_ptr<LlamaModel> m(new LlamaModel(c, device, dtype));
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim, E = c.hidden, I = c.intermediate;
  KV_ASSIGN_OR_RETURN(m->embed_, take("model.embed_tokens.weight", {c.vocab_size, E}));
  if (c.tie_embeddings) {
    m->lm_head_.w = m->embed_;
    m->lm_head_.packed = pack({"model.embed_tokens.weight"});
  } else {
    KV_ASSIGN_OR_RETURN(m->lm_head_.w, take("lm_head.weight", {c.vocab_size, E}));
    m->lm_head_.packed = pack({"lm_head.weight"});
  }
  KV_ASSIGN_OR_RETURN(m->norm_, take("model.norm.weight", {E}));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    LayerWeights L;
    KV_ASSIGN_OR_RETURN(L.attn_norm, take(p + "input_layernorm.weight", {E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wq, take(p + "self_attn.q_proj.weight", {H * D, E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wk, take(p + "self_attn.k_proj.weight", {Hkv * D, E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wv, take(p + "self_attn.v_proj.weight", {Hkv * D, E}));
    L.qkv.w = at::cat({wq, wk, wv}, 0);
    L.qkv.packed = pack({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"});
    if (c.qkv_bias) {
      KV_ASSIGN_OR_RETURN(at::Tensor bq, take(p + "self_attn.q_proj.bias", {H * D}));
      KV_ASSIGN_OR_RETURN(at::Tensor bk, take(p + "self_attn.k_proj.bias", {Hkv * D}));
      KV_ASSIGN_OR_RETURN(at::Tensor bv, take(p + "self_attn.v_proj.bias", {Hkv * D}));
      L.qkv.b = at::cat({bq, bk, bv}, 0);
    }
    KV_ASSIGN_OR_RETURN(L.o.w, take(p + "self_attn.o_proj.weight", {E, H * D}));
    L.o.packed = pack({p + "self_attn.o_proj.weight"});
    KV_ASSIGN_OR_RETURN(L.ffn_norm, take(p + "post_attention_layernorm.weight", {E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wg, take(p + "mlp.gate_proj.weight", {I, E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wu, take(p + "mlp.up_proj.weight", {I, E}));
    L.gate_up.w = at::cat({wg, wu}, 0);
    L.gate_up.packed = pack({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
    KV_ASSIGN_OR_RETURN(L.down.w, take(p + "mlp.down_proj.weight", {E, I}));
    L.down.packed = pack({p + "mlp.down_proj.weight"});
    for (const at::Tensor* x : {&L.attn_norm, &L.ffn_norm}) m->weight_bytes_ += x->nbytes();
    for (const Linear* x : {&L.qkv, &L.o, &L.gate_up, &L.down}) {
      m->weight_bytes_ += x->w.nbytes() + (x->b.defined() ? x->b.nbytes() : 0) + (x->packed ? x->packed->bytes() : 0);
    }
    m->layers_.push_back(std::move(L));
  }
  if (device.is_cuda()) m->graphs_ = std::make_unique<DecodeGraphs>(*m);  // reads KVSTREAM_CUDA_GRAPHS now
  m->weight_bytes_ += m->embed_.nbytes() + m->norm_.nbytes() + (c.tie_embeddings ? 0 : m->lm_head_.w.nbytes()) +
                      (m->lm_head_.packed ? m->lm_head_.packed->bytes() : 0);
  return m;
}

KvGeometry LlamaModel::geometry() const {
  KvGeometry g;
  g.n_layers = config_.n_layers;
  g.n_heads = config_.n_heads;
  g.n_kv_heads = config_.n_kv_heads;
  g.head_dim = config_.head_dim;
  g.context_length = config_.context_length;
  g.dtype = dtype_;
  g.device = device_;
  return g;
}

// Hugging Face LlamaRMSNorm: statistics in fp32, scale applied after casting back.
at::Tensor LlamaModel::RmsNorm(const at::Tensor& x, const at::Tensor& weight) const {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(var + config_.rms_eps)).to(x.scalar_type());
}

at::Tensor LlamaModel::Project(const at::Tensor& x, const Linear& w) const {
  if (w.packed != nullptr && x.size(0) <= kPackedMaxRows) {
    const at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty({x.size(0), w.packed->rows}, x.options());
    PackedMatmul(*w.packed, xc.const_data_ptr<float>(), x.size(0), y.mutable_data_ptr<float>());
    return w.b.defined() ? y.add_(w.b) : y;
  }
  if (auto y = SkinnyLinear(x, w.w, w.b)) return *std::move(y);  // CUDA decode, 1-2 rows: our GEMV
  if (auto y = TunedLinear(x, w.w, w.b)) return *std::move(y);   // 3-64 rows: the fastest cublasLt algorithm
  return w.b.defined() ? at::linear(x, w.w, w.b) : at::linear(x, w.w);
}

absl::StatusOr<at::Tensor> LlamaModel::Forward(absl::Span<const SeqInput> seqs, const StepContext& ctx) {
  KV_ASSIGN_OR_RETURN(StepResult r, Step(seqs, ctx));
  return std::move(r.logits);
}

absl::StatusOr<StepResult> LlamaModel::Step(absl::Span<const SeqInput> seqs, const StepContext& ctx) {
  if (!tp_group_.empty()) return ForwardTensorParallel(seqs, ctx);
  return ForwardLocal(seqs, ctx);
}

absl::StatusOr<StepResult> LlamaModel::ForwardLocal(absl::Span<const SeqInput> seqs, const StepContext& ctx) {
  // ---- gather the step's rows --------------------------------------------
  std::vector<int64_t> ids, pos, out_rows;
  std::vector<SeqStep> steps(seqs.size());
  std::vector<int64_t> row_offset(seqs.size());
  // Run-ahead rows take their token from the decode graph's buffer: all
  // rows or none, decode rows only.
  const bool fed = !seqs.empty() && seqs[0].token_on_device;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SeqInput& s = seqs[i];
    if (s.token_on_device != fed || (fed && (s.tokens.size() != 1 || s.is_prompt))) {
      return absl::InternalError("Forward: run-ahead rows must be every row of the step, one decode token each");
    }
    if (s.tokens.empty() || s.cache == nullptr || s.strategy == nullptr) {
      return absl::InternalError("Forward: a sequence has no tokens, cache or strategy");
    }
    // The last n_probe tokens are an ephemeral probe with their own positions
    // (laser_kv.md §6.2); RoPE takes positions per row, so nothing else changes.
    const int64_t n_tok = static_cast<int64_t>(s.tokens.size());
    if (s.n_probe < 0 || s.n_probe >= n_tok) {
      return absl::InternalError(absl::StrFormat("Forward: probe of %d rows in a step of %d", s.n_probe, n_tok));
    }
    const int64_t n_keep = n_tok - s.n_probe;
    row_offset[i] = static_cast<int64_t>(ids.size());
    steps[i] = SeqStep{s.start_pos, n_keep, s.is_prompt, s.last_prompt_chunk, s.n_probe, s.probe_start_pos};
    for (int64_t j = 0; j < n_tok; ++j) {
      if (!fed && (s.tokens[j] < 0 || s.tokens[j] >= config_.vocab_size)) {
        return absl::InvalidArgumentError(absl::StrFormat("token id %d outside the vocabulary [0, %d)",
                                                          s.tokens[j], config_.vocab_size));
      }
      ids.push_back(s.tokens[j]);
      pos.push_back(j < n_keep ? s.start_pos + j : s.probe_start_pos + (j - n_keep));
      if (j < n_keep && (s.all_logits || j + 1 == n_keep)) out_rows.push_back(static_cast<int64_t>(ids.size()) - 1);
    }
  }

  // Attention groups: sequences sharing a strategy attend in one call.
  std::map<Strategy*, AttentionGroup> by_strategy;
  for (size_t i = 0; i < seqs.size(); ++i) {
    AttentionGroup& g = by_strategy[seqs[i].strategy];
    g.strategy = seqs[i].strategy;
    g.caches.push_back(seqs[i].cache);
    g.steps.push_back(steps[i]);
    g.row_offset.push_back(row_offset[i]);
  }
  std::vector<AttentionGroup> groups;
  for (auto& [_, g] : by_strategy) groups.push_back(std::move(g));

  StepResult result;
  // Decode steps on CUDA replay a captured graph when they qualify.
  std::optional<absl::StatusOr<GraphStepOut>> replayed;
  if (device_.is_cuda()) {
    replayed = graphs_->TryRun(groups, ids, pos, ctx, fed);
  }
  if (replayed.has_value()) {
    KV_ASSIGN_OR_RETURN(GraphStepOut g, std::move(*replayed));
    result.logits = std::move(g.logits);
    result.stats = std::move(g.stats);
  } else {
    auto on_dev = [&](const std::vector<int64_t>& v) {
      return at::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kLong)
          .to(device_);
    };
    // A run-ahead step that cannot replay after all (graphs just turned
    // off) still finds its tokens on the device.
    const at::Tensor tokens = fed ? graphs_->FedTokens(static_cast<int64_t>(ids.size())).clone() : on_dev(ids);
    KV_ASSIGN_OR_RETURN(at::Tensor x, Layers(Embed(tokens), on_dev(pos), groups, ctx));
    KV_ASSIGN_OR_RETURN(result.logits, Logits(x.index_select(0, on_dev(out_rows))));
  }
  for (size_t i = 0; i < seqs.size(); ++i) KV_RETURN_IF_ERROR(seqs[i].cache->EndStep(steps[i], ctx));
  return result;
}

int64_t LlamaModel::decode_weight_bytes() const {
  auto linear = [](const Linear& w) {
    return (w.packed ? w.packed->bytes() : w.w.nbytes()) + (w.b.defined() ? w.b.nbytes() : 0);
  };
  int64_t bytes = norm_.nbytes() + linear(lm_head_);
  for (const LayerWeights& L : layers_) {
    bytes += L.attn_norm.nbytes() + L.ffn_norm.nbytes() + linear(L.qkv) + linear(L.o) + linear(L.gate_up) +
             linear(L.down);
  }
  return bytes;
}

int64_t LlamaModel::decode_graph_replays() const { return graphs_ ? graphs_->replays() : 0; }
int64_t LlamaModel::decode_graphs_captured() const { return graphs_ ? graphs_->graphs_captured() : 0; }
double LlamaModel::decode_graph_gpu_ms() const { return graphs_ ? graphs_->replay_gpu_ms() : 0.0; }

at::Tensor LlamaModel::Embed(const at::Tensor& tokens) const { return embed_.index_select(0, tokens); }

absl::StatusOr<at::Tensor> LlamaModel::Logits(const at::Tensor& hidden) const {
  at::Tensor local;
  if (FusedBlockAvailable(hidden)) {
    // CUDA: the final norm folded into the lm-head GEMV (decode rows), or one
    // fused norm kernel; the ATen RMSNorm is ~10 launches per step.
    at::Tensor x = hidden.contiguous();
    at::Tensor h = at::empty_like(x);
    if (auto y = NormProject(x, at::Tensor(), norm_, lm_head_, h); y.ok()) local = y->to(at::kFloat);
  }
  if (!local.defined()) local = Project(RmsNorm(hidden, norm_), lm_head_).to(at::kFloat);
  if (comm_ == nullptr) return local;
  return GatherVocab(local);
}

absl::StatusOr<at::Tensor> LlamaModel::NormProject(at::Tensor& x, const at::Tensor& delta, const at::Tensor& norm_w,
                                                   const Linear& w, at::Tensor& h,
                                                   const ProjectEpilogue& epilogue) const {
  const bool fold = epilogue.kind != ProjectEpilogue::kNone && GemvEpiloguesEnabled();
  at::Tensor y;
  if (auto f = SkinnyNormLinear(x, delta, norm_w, config_.rms_eps, w.w, w.b, fold ? epilogue : ProjectEpilogue{})) {
    if (f->residual.defined()) x = f->residual;  // 1-2 decode rows: add + norm + projection (+ op) in one kernel
    if (fold) return f->y;
    y = f->y;
  } else {
    KV_RETURN_IF_ERROR(AddRmsNorm(x, delta, norm_w, h, config_.rms_eps));
    y = Project(h, w);
  }
  switch (epilogue.kind) {
    case ProjectEpilogue::kNone: return y;
    case ProjectEpilogue::kSiluMul: return SiluMul(y);
    case ProjectEpilogue::kRope:
      KV_RETURN_IF_ERROR(
          RopeQk(y, epilogue.positions, epilogue.inv_freq, epilogue.n_heads, epilogue.n_kv_heads, epilogue.head_dim));
      return y;
  }
  return y;
}

absl::StatusOr<at::Tensor> LlamaModel::Layers(at::Tensor x, const at::Tensor& positions,
                                              absl::Span<const AttentionGroup> groups, const StepContext& ctx) {
  if (FusedBlockAvailable(x)) return FusedLayers(std::move(x), positions, groups, ctx);
  const int64_t H = config_.n_heads, Hkv = config_.n_kv_heads, D = config_.head_dim, I = config_.intermediate;
  const int64_t N = x.size(0);
  at::Tensor cos, sin;
  rope_.Tables(positions, &cos, &sin);
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    const LayerWeights& L = layers_[l];
    // ---- attention ------------------------------------------------------
    at::Tensor h = RmsNorm(x, L.attn_norm);
    at::Tensor qkv = Project(h, L.qkv);
    at::Tensor q = qkv.narrow(1, 0, H * D).view({N, H, D});
    at::Tensor k = qkv.narrow(1, H * D, Hkv * D).view({N, Hkv, D});
    at::Tensor v = qkv.narrow(1, (H + Hkv) * D, Hkv * D).view({N, Hkv, D});
    Rope::Apply(q, cos, sin);
    Rope::Apply(k, cos, sin);
    GroupTensors gt{q, k, v, at::empty({N, H, D}, x.options()), {}};
    for (const AttentionGroup& g : groups) {
      gt.row_offset = g.row_offset;
      KV_RETURN_IF_ERROR(g.strategy->ForwardGroup(l, g.caches, g.steps, gt, ctx));
    }
    at::Tensor attn = Project(gt.out.view({N, H * D}), L.o);
    KV_RETURN_IF_ERROR(ReduceRowParallel(attn));
    x = x + attn;
    // ---- SwiGLU MLP -----------------------------------------------------
    h = RmsNorm(x, L.ffn_norm);
    at::Tensor gu = Project(h, L.gate_up);
    at::Tensor mlp = Project(at::silu(gu.narrow(1, 0, I)) * gu.narrow(1, I, I), L.down);
    KV_RETURN_IF_ERROR(ReduceRowParallel(mlp));
    x = x + mlp;
  }
  return x;
}

// The same layers with the fused CUDA ops: ~10 kernels a layer instead of
// ~40. Each residual add is folded into the next RMSNorm, so `delta` carries
// a projection's output until then.
absl::StatusOr<at::Tensor> LlamaModel::FusedLayers(at::Tensor x, const at::Tensor& positions,
                                                   absl::Span<const AttentionGroup> groups, const StepContext& ctx) {
  const int64_t H = config_.n_heads, Hkv = config_.n_kv_heads, D = config_.head_dim;
  const int64_t N = x.size(0);
  x = x.contiguous();
  at::Tensor delta;  // pending residual add
  at::Tensor h = at::empty_like(x);
  ProjectEpilogue rope;
  rope.kind = ProjectEpilogue::kRope;
  rope.positions = positions;
  rope.inv_freq = rope_.inv_freq();
  rope.n_heads = H;
  rope.n_kv_heads = Hkv;
  rope.head_dim = D;
  ProjectEpilogue swiglu;
  swiglu.kind = ProjectEpilogue::kSiluMul;
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    const LayerWeights& L = layers_[l];
    // ---- attention ------------------------------------------------------
    KV_ASSIGN_OR_RETURN(at::Tensor qkv, NormProject(x, delta, L.attn_norm, L.qkv, h, rope));
    at::Tensor q = qkv.narrow(1, 0, H * D).view({N, H, D});
    at::Tensor k = qkv.narrow(1, H * D, Hkv * D).view({N, Hkv, D});
    at::Tensor v = qkv.narrow(1, (H + Hkv) * D, Hkv * D).view({N, Hkv, D});
    GroupTensors gt{q, k, v, at::empty({N, H, D}, x.options()), {}};
    for (const AttentionGroup& g : groups) {
      gt.row_offset = g.row_offset;
      KV_RETURN_IF_ERROR(g.strategy->ForwardGroup(l, g.caches, g.steps, gt, ctx));
    }
    delta = Project(gt.out.view({N, H * D}), L.o);
    KV_RETURN_IF_ERROR(ReduceRowParallel(delta));  // tensor parallelism: o is row-parallel
    // ---- SwiGLU MLP -----------------------------------------------------
    KV_ASSIGN_OR_RETURN(at::Tensor act, NormProject(x, delta, L.ffn_norm, L.gate_up, h, swiglu));
    delta = Project(act, L.down);
    KV_RETURN_IF_ERROR(ReduceRowParallel(delta));  // and so is down
  }
  return x.add_(delta);
}

LlamaModel::LlamaModel(ModelConfig config, c10::Device device, c10::ScalarType dtype)
    : config_(std::move(config)), device_(device), dtype_(dtype), rope_(config_, device) {}

LlamaModel::~LlamaModel() = default;

}  // namespace kvstream
