#include "engine/model/loader/llama_tensors.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvstream::loader {
namespace {

constexpr absl::string_view kLayerParts[] = {
    "input_layernorm",  "self_attn.q_proj", "self_attn.k_proj",
    "self_attn.v_proj", "self_attn.o_proj", "post_attention_layernorm",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

absl::Status Unknown(absl::string_view name) {
  return absl::InvalidArgumentError(
      absl::StrCat("tensor '", name, "' is not a Llama-family tensor"));
}

// Shape of "<part>.<weight|bias>" inside a layer; empty if not a tensor.
std::vector<int64_t> LayerShape(const ModelConfig& c, absl::string_view part, bool bias) {
  const int64_t q = c.n_heads * c.head_dim, kv = c.n_kv_heads * c.head_dim;
  if (part == "self_attn.q_proj") return bias ? std::vector<int64_t>{q} : std::vector<int64_t>{q, c.hidden};
  if (part == "self_attn.k_proj" || part == "self_attn.v_proj") {
    return bias ? std::vector<int64_t>{kv} : std::vector<int64_t>{kv, c.hidden};
  }
  if (bias) return {};  // norms, o_proj and the MLP carry no bias in this family
  if (part == "input_layernorm" || part == "post_attention_layernorm") return {c.hidden};
  if (part == "self_attn.o_proj") return {c.hidden, q};
  if (part == "mlp.gate_proj" || part == "mlp.up_proj") return {c.intermediate, c.hidden};
  if (part == "mlp.down_proj") return {c.hidden, c.intermediate};
  return {};
}

}  // namespace

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::vector<int64_t>> LlamaTensorShape(const ModelConfig& c,
                                                      absl::string_view name) {
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") {
    return std::vector<int64_t>{c.vocab_size, c.hidden};
  }
  if (name == "model.norm.weight") return std::vector<int64_t>{c.hidden};
  if (name == "rope_freqs") return std::vector<int64_t>{c.head_dim / 2};
  // "model.layers.<N>.<part>.<weight|bias>", where <part> may hold one dot.
  absl::string_view rest = name;
  if (!absl::ConsumePrefix(&rest, "model.layers.")) return Unknown(name);
  const size_t dot = rest.find('.');
  if (dot == absl::string_view::npos) return Unknown(name);
  const absl::string_view idx = rest.substr(0, dot);
  rest.remove_prefix(dot + 1);
  int64_t layer = -1;
  // Canonical decimal only, so "01" and "1" cannot both name layer 1.
  if (!absl::SimpleAtoi(idx, &layer) || absl::StrCat(layer) != idx) return Unknown(name);
  if (layer < 0 || layer >= c.n_layers) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tensor '%s': layer %d, expected 0..%d", name, layer, c.n_layers - 1));
  }
  bool bias = false;
  if (absl::ConsumeSuffix(&rest, ".bias")) {
    bias = true;
  } else if (!absl::ConsumeSuffix(&rest, ".weight")) {
    return Unknown(name);
  }
  std::vector<int64_t> shape = LayerShape(c, rest, bias);
  if (shape.empty()) return Unknown(name);
  return shape;
}

absl::Status CheckLlamaTensorSet(const ModelConfig& c,
                                 const absl::flat_hash_set<std::string>& names) {
  auto need = [&](const std::string& n) -> absl::Status {
    if (names.contains(n)) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("tensor '", n, "' is missing"));
  };
  if (absl::Status s = need("model.embed_tokens.weight"); !s.ok()) return s;
  if (absl::Status s = need("model.norm.weight"); !s.ok()) return s;
  if (!c.tie_embeddings) {
    if (absl::Status s = need("lm_head.weight"); !s.ok()) return s;
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string prefix = absl::StrCat("model.layers.", l, ".");
    for (absl::string_view part : kLayerParts) {
      if (absl::Status s = need(absl::StrCat(prefix, part, ".weight")); !s.ok()) return s;
    }
    for (absl::string_view p : {"q_proj", "k_proj", "v_proj"}) {
      const std::string bias = absl::StrCat(prefix, "self_attn.", p, ".bias");
      if (c.qkv_bias) {
        if (absl::Status s = need(bias); !s.ok()) return s;
      } else if (names.contains(bias)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", bias, "' is present but the model has no q/k/v bias (biases must be "
            "in every layer or in none)"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace kvstream::loader
