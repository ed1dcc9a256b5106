// GGUF tensor table -> Hugging Face names, shapes checked against the
// config, then dequantization. Names: llama.cpp's tensor names
// (gguf-py constants.py TENSOR_NAMES) on one side, transformers'
// LlamaForCausalLM state dict on the other.
#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/model/loader/gguf_weights.h"
#include "engine/model/loader/llama_tensors.h"
#include "engine/status_macros.h"

namespace kvstream::loader {
namespace {

// GGUF layer part -> transformers module path.
struct LayerPart {
  absl::string_view gguf;  // "attn_q"
  absl::string_view hf;    // "self_attn.q_proj"
};
constexpr LayerPart kLayerParts[] = {
    {"attn_norm", "input_layernorm"},     {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},       {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},  {"ffn_norm", "post_attention_layernorm"},
    {"ffn_gate", "mlp.gate_proj"},        {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
};

absl::Status Bad(absl::string_view tensor, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("gguf: tensor '", tensor, "': ", msg));
}

// Fills plan.hf_name (and unpermute_heads) for one GGUF tensor name.
absl::Status MapName(const std::string& name, const ModelConfig& c, GgufTensorPlan& plan) {
  if (name == "token_embd.weight") {
    plan.hf_name = "model.embed_tokens.weight";
  } else if (name == "output_norm.weight") {
    plan.hf_name = "model.norm.weight";
  } else if (name == "output.weight") {
    plan.hf_name = "lm_head.weight";
  } else if (name == "rope_freqs.weight") {
    // Llama-3.1 files carry per-frequency RoPE factors; the runner applies them.
    plan.hf_name = "rope_freqs";
  } else {
    // "blk.<N>.<part>.<weight|bias>"; the layer index is checked by
    // LlamaTensorShape on the HF name.
    std::vector<absl::string_view> parts = absl::StrSplit(name, '.');
    if (parts.size() != 4 || parts[0] != "blk") return Bad(name, "not a Llama-family tensor name");
    const LayerPart* part = nullptr;
    for (const LayerPart& lp : kLayerParts) {
      if (lp.gguf == parts[2]) part = &lp;
    }
    if (part == nullptr) return Bad(name, "not a Llama-family tensor name");
    plan.hf_name = absl::StrCat("model.layers.", parts[1], ".", part->hf, ".", parts[3]);
    // NOTE(loader): llama.cpp's converter interleaves each head's Q/K rows
    // for its rotary layout (convert_hf_to_gguf.py LlamaModel.permute); qwen2
    // files are written unpermuted. transformers' LlamaTensorProcessor undoes
    // it for names containing ".attn_q." / ".attn_k." (weights and biases).
    const bool permuted_arch = c.architecture == "llama" || c.architecture == "mistral";
    if (permuted_arch && part->gguf == "attn_q") plan.unpermute_heads = c.n_heads;
    if (permuted_arch && part->gguf == "attn_k") plan.unpermute_heads = c.n_kv_heads;
  }
  return absl::OkStatus();
}

// Undoes the permutation: GGUF row (h, d, j) of a [heads, dim, 2, cols]
// view is HF row (h, j, d) of [heads, 2, dim, cols] (transformers'
// reshape(n_head, dim, 2, ...).swapaxes(2, 1)).
template <typename T>
void UnpermuteRows(const std::vector<T>& in, int64_t heads, int64_t rows, int64_t cols, T* out) {
  const int64_t dim = rows / heads / 2;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t d = 0; d < dim; ++d) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t src = (h * dim + d) * 2 + j;
        const int64_t dst = (h * 2 + j) * dim + d;
        std::copy_n(in.data() + src * cols, cols, out + dst * cols);
      }
    }
  }
}

// Types whose blocks the CPU matvec reads directly (engine/model/packed_matrix.h).
bool KeepsPackedBlocks(GgmlType type, const std::vector<int64_t>& shape) {
  return shape.size() == 2 && (type == GgmlType::kQ4_1 || type == GgmlType::kQ8_0);
}

}  // namespace

absl::StatusOr<std::vector<GgufTensorPlan>> PlanGgufTensors(const GgufFile& f,
                                                            ModelConfig& config) {
  std::vector<GgufTensorPlan> plans;
  plans.reserve(f.tensors.size());
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    const GgufTensorInfo& t = f.tensors[i];
    GgufTensorPlan plan;
    plan.index = i;
    KV_RETURN_IF_ERROR(MapName(t.name, config, plan));
    auto want = LlamaTensorShape(config, plan.hf_name);
    if (!want.ok()) return Bad(t.name, want.status().message());
    plan.shape.assign(t.ne.rbegin(), t.ne.rend());  // ggml ne is innermost-first
    if (plan.shape != *want) {
      return Bad(t.name, absl::StrFormat("shape %s, expected %s from the config",
                                         ShapeString(plan.shape), ShapeString(*want)));
    }
    if (!seen.insert(plan.hf_name).second) {
      return Bad(t.name, absl::StrCat("maps to '", plan.hf_name, "' twice"));
    }
    plans.push_back(std::move(plan));
  }
  // What the file holds decides tying and biases (llama.cpp writes no flags).
  config.tie_embeddings = !seen.contains("lm_head.weight");
  config.qkv_bias = seen.contains("model.layers.0.self_attn.q_proj.bias");
  absl::Status s = CheckLlamaTensorSet(config, seen);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("gguf: ", s.message()));
  return plans;
}

absl::StatusOr<HostTensor> MaterializeGgufTensor(const GgufFile& f, const GgufTensorPlan& plan) {
  const GgufTensorInfo& t = f.tensors.at(plan.index);
  HostTensor out;
  out.shape = plan.shape;
  out.source_dtype = std::string(FindGgmlType(static_cast<uint32_t>(t.type))->name);
  out.data.resize(static_cast<size_t>(t.n_elements));
  absl::Status s = DequantizeToF32(t.type, f.TensorBytes(t), out.data);
  if (!s.ok()) {  // keep the code: an unsupported dtype stays FailedPrecondition
    return absl::Status(s.code(), absl::StrCat("gguf: tensor '", t.name, "': ", s.message()));
  }
  const bool keep_packed = KeepsPackedBlocks(t.type, plan.shape);
  if (keep_packed) {
    const std::span<const uint8_t> bytes = f.TensorBytes(t);
    out.packed_type = static_cast<uint32_t>(t.type);
    out.packed.assign(bytes.begin(), bytes.end());
  }
  if (plan.unpermute_heads > 0) {
    const int64_t rows = plan.shape[0], cols = t.n_elements / rows;
    if (rows % (2 * plan.unpermute_heads) != 0) {
      return Bad(t.name, absl::StrFormat("%d rows do not split into %d heads of row pairs", rows,
                                         plan.unpermute_heads));
    }
    std::vector<float> permuted = std::move(out.data);
    out.data.resize(permuted.size());
    UnpermuteRows(permuted, plan.unpermute_heads, rows, cols, out.data.data());
    if (keep_packed) {  // blocks never straddle rows: permute whole byte rows
      std::vector<uint8_t> packed = std::move(out.packed);
      out.packed.resize(packed.size());
      UnpermuteRows(packed, plan.unpermute_heads, rows, static_cast<int64_t>(packed.size()) / rows,
                    out.packed.data());
    }
  }
  return out;
}

absl::StatusOr<LoadedWeights> GgufToWeights(const GgufFile& f, bool dequantize) {
  LoadedWeights w;
  w.format = "gguf";
  w.file_bytes = static_cast<int64_t>(f.bytes.size());
  KV_ASSIGN_OR_RETURN(w.config, GgufModelConfig(f));
  KV_ASSIGN_OR_RETURN(std::vector<GgufTensorPlan> plans, PlanGgufTensors(f, w.config));
  KV_ASSIGN_OR_RETURN(w.tokenizer, GgufTokenizerData(f, w.config.vocab_size));
  if (!dequantize) return w;
  for (const GgufTensorPlan& plan : plans) {
    KV_ASSIGN_OR_RETURN(HostTensor t, MaterializeGgufTensor(f, plan));
    w.tensors.emplace(plan.hf_name, std::move(t));
  }
  return w;
}

absl::StatusOr<LoadedWeights> LoadGgufWeights(const std::string& path) {
  KV_ASSIGN_OR_RETURN(GgufMapped m, OpenGguf(path));
  auto w = GgufToWeights(m.gguf);
  if (!w.ok()) {
    return absl::Status(w.status().code(), absl::StrCat(path, ": ", w.status().message()));
  }
  return w;
}

}  // namespace kvstream::loader
