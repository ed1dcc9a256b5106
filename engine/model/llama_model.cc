#include "engine/model/llama_model.h"

#include <ATen/ATen.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
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

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(LoadedWeights w, c10::Device device,
                                                               c10::ScalarType dtype) {
  return Build(w.config, [&](const std::string& name, std::vector<int64_t> shape) {
    return Take(w.tensors, name, std::move(shape), device, dtype);
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
  }, device, dtype);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Build(const ModelConfig& c, const TensorSource& take,
                                                              c10::Device device, c10::ScalarType dtype) {
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
    m->lm_head_ = m->embed_;
  } else {
    KV_ASSIGN_OR_RETURN(m->lm_head_, take("lm_head.weight", {c.vocab_size, E}));
  }
  KV_ASSIGN_OR_RETURN(m->norm_, take("model.norm.weight", {E}));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    LayerWeights L;
    KV_ASSIGN_OR_RETURN(L.attn_norm, take(p + "input_layernorm.weight", {E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wq, take(p + "self_attn.q_proj.weight", {H * D, E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wk, take(p + "self_attn.k_proj.weight", {Hkv * D, E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wv, take(p + "self_attn.v_proj.weight", {Hkv * D, E}));
    L.wqkv = at::cat({wq, wk, wv}, 0);
    if (c.qkv_bias) {
      KV_ASSIGN_OR_RETURN(at::Tensor bq, take(p + "self_attn.q_proj.bias", {H * D}));
      KV_ASSIGN_OR_RETURN(at::Tensor bk, take(p + "self_attn.k_proj.bias", {Hkv * D}));
      KV_ASSIGN_OR_RETURN(at::Tensor bv, take(p + "self_attn.v_proj.bias", {Hkv * D}));
      L.bqkv = at::cat({bq, bk, bv}, 0);
    }
    KV_ASSIGN_OR_RETURN(L.wo, take(p + "self_attn.o_proj.weight", {E, H * D}));
    KV_ASSIGN_OR_RETURN(L.ffn_norm, take(p + "post_attention_layernorm.weight", {E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wg, take(p + "mlp.gate_proj.weight", {I, E}));
    KV_ASSIGN_OR_RETURN(at::Tensor wu, take(p + "mlp.up_proj.weight", {I, E}));
    L.w_gate_up = at::cat({wg, wu}, 0);
    KV_ASSIGN_OR_RETURN(L.w_down, take(p + "mlp.down_proj.weight", {E, I}));
    for (const at::Tensor* x : {&L.attn_norm, &L.wqkv, &L.wo, &L.ffn_norm, &L.w_gate_up, &L.w_down}) {
      m->weight_bytes_ += x->nbytes();
    }
    m->layers_.push_back(std::move(L));
  }
  m->weight_bytes_ += m->embed_.nbytes() + m->norm_.nbytes() + (c.tie_embeddings ? 0 : m->lm_head_.nbytes());
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

absl::StatusOr<at::Tensor> LlamaModel::Forward(absl::Span<const SeqInput> seqs, const StepContext& ctx) {
  const int64_t H = config_.n_heads, Hkv = config_.n_kv_heads, D = config_.head_dim;
  // ---- gather the step's rows --------------------------------------------
  std::vector<int64_t> ids, pos, out_rows;
  std::vector<SeqStep> steps(seqs.size());
  std::vector<int64_t> row_offset(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) {
    const SeqInput& s = seqs[i];
    if (s.tokens.empty() || s.cache == nullptr || s.strategy == nullptr) {
      return absl::InternalError("Forward: a sequence has no tokens, cache or strategy");
    }
    row_offset[i] = static_cast<int64_t>(ids.size());
    steps[i] = SeqStep{s.start_pos, static_cast<int64_t>(s.tokens.size()), s.is_prompt, s.last_prompt_chunk};
    for (size_t j = 0; j < s.tokens.size(); ++j) {
      if (s.tokens[j] < 0 || s.tokens[j] >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrFormat("token id %d outside the vocabulary [0, %d)",
                                                          s.tokens[j], config_.vocab_size));
      }
      ids.push_back(s.tokens[j]);
      pos.push_back(s.start_pos + static_cast<int64_t>(j));
      if (s.all_logits || j + 1 == s.tokens.size()) out_rows.push_back(static_cast<int64_t>(ids.size()) - 1);
    }
  }
  const int64_t N = static_cast<int64_t>(ids.size());
  auto on_dev = [&](const std::vector<int64_t>& v) {
    return at::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kLong)
        .to(device_);
  };
  at::Tensor tok = on_dev(ids), positions = on_dev(pos);

  // Attention groups: sequences sharing a strategy attend in one call.
  std::map<Strategy*, std::vector<size_t>> groups;
  for (size_t i = 0; i < seqs.size(); ++i) groups[seqs[i].strategy].push_back(i);

  at::Tensor cos, sin;
  rope_.Tables(positions, &cos, &sin);
  at::Tensor x = embed_.index_select(0, tok);  // [N, E]

  for (int64_t l = 0; l < config_.n_layers; ++l) {
    const LayerWeights& L = layers_[l];
    // ---- attention ------------------------------------------------------
    at::Tensor h = RmsNorm(x, L.attn_norm);
    at::Tensor qkv = L.bqkv.defined() ? at::linear(h, L.wqkv, L.bqkv) : at::linear(h, L.wqkv);
    at::Tensor q = qkv.narrow(1, 0, H * D).view({N, H, D});
    at::Tensor k = qkv.narrow(1, H * D, Hkv * D).view({N, Hkv, D});
    at::Tensor v = qkv.narrow(1, (H + Hkv) * D, Hkv * D).view({N, Hkv, D});
    Rope::Apply(q, cos, sin);
    Rope::Apply(k, cos, sin);
    GroupTensors gt{q, k, v, at::empty({N, H, D}, x.options()), {}};
    for (auto& [strategy, members] : groups) {
      std::vector<SequenceCache*> caches;
      std::vector<SeqStep> gsteps;
      gt.row_offset.clear();
      for (size_t i : members) {
        caches.push_back(seqs[i].cache);
        gsteps.push_back(steps[i]);
        gt.row_offset.push_back(row_offset[i]);
      }
      KV_RETURN_IF_ERROR(strategy->ForwardGroup(l, caches, gsteps, gt, ctx));
    }
    x = x + at::linear(gt.out.view({N, H * D}), L.wo);
    // ---- SwiGLU MLP -----------------------------------------------------
    h = RmsNorm(x, L.ffn_norm);
    at::Tensor gu = at::linear(h, L.w_gate_up);
    const int64_t I = config_.intermediate;
    x = x + at::linear(at::silu(gu.narrow(1, 0, I)) * gu.narrow(1, I, I), L.w_down);
  }
  for (size_t i = 0; i < seqs.size(); ++i) KV_RETURN_IF_ERROR(seqs[i].cache->EndStep(steps[i], ctx));

  at::Tensor last = x.index_select(0, on_dev(out_rows));
  return at::linear(RmsNorm(last, norm_), lm_head_).to(at::kFloat);
}

}  // namespace kvstream
