#include "engine/model/loader/hf_config.h"

#include <cmath>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/status_macros.h"
#include "nlohmann/json.hpp"

namespace kvstream::loader {
namespace {

using nlohmann::json;

constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxWidth = int64_t{1} << 20;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxContext = int64_t{1} << 26;

absl::Status Bad(absl::string_view field, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: \"", field, "\": ", msg));
}

// An integer field in [min, max]; nullopt when absent or null (transformers
// writes `"head_dim": null` for "derive it").
absl::StatusOr<std::optional<int64_t>> OptInt(const json& j, const char* field, int64_t min,
                                              int64_t max) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) {
    return Bad(field, absl::StrCat("is a ", it->type_name(), ", expected an integer"));
  }
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max)) {
    return Bad(field, absl::StrFormat("%u out of range, expected %d..%d", it->get<uint64_t>(),
                                      min, max));
  }
  const int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return Bad(field, absl::StrFormat("%d out of range, expected %d..%d", v, min, max));
  }
  return std::optional<int64_t>(v);
}

absl::StatusOr<int64_t> ReqInt(const json& j, const char* field, int64_t min, int64_t max) {
  KV_ASSIGN_OR_RETURN(auto v, OptInt(j, field, min, max));
  if (!v) return Bad(field, "missing");
  return *v;
}

absl::StatusOr<std::optional<double>> OptFloat(const json& j, const char* field, double min,
                                               double max) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return std::optional<double>();
  if (!it->is_number()) return Bad(field, absl::StrCat("is a ", it->type_name(), ", expected a number"));
  const double v = it->get<double>();
  if (!std::isfinite(v) || !(v >= min && v <= max)) {
    return Bad(field, absl::StrFormat("%g out of range, expected %g..%g", v, min, max));
  }
  return std::optional<double>(v);
}

absl::StatusOr<std::optional<bool>> OptBool(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) return Bad(field, absl::StrCat("is a ", it->type_name(), ", expected a bool"));
  return std::optional<bool>(it->get<bool>());
}

std::optional<std::string> OptString(const json& j, const char* field) {
  auto it = j.find(field);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// The architecture from "architectures"[0], else "model_type".
absl::StatusOr<std::string> Architecture(const json& j) {
  auto it = j.find("architectures");
  if (it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    const std::string a = (*it)[0].get<std::string>();
    if (a == "LlamaForCausalLM") return std::string("llama");
    if (a == "Qwen2ForCausalLM") return std::string("qwen2");
    if (a == "MistralForCausalLM") return std::string("mistral");
    return absl::FailedPreconditionError(absl::StrCat(
        "config.json: \"architectures\": '", a, "' is not supported, expected "
        "LlamaForCausalLM, Qwen2ForCausalLM or MistralForCausalLM"));
  }
  const std::string t = absl::AsciiStrToLower(OptString(j, "model_type").value_or(""));
  if (t == "llama" || t == "qwen2" || t == "mistral") return t;
  return absl::FailedPreconditionError(absl::StrCat(
      "config.json: no supported \"architectures\" entry and \"model_type\" is '", t,
      "', expected llama, qwen2 or mistral"));
}

// RoPE: "rope_parameters" (transformers 5) or "rope_theta" + "rope_scaling".
absl::Status ReadRope(const json& j, ModelConfig& c) {
  const json* scaling = nullptr;
  auto params = j.find("rope_parameters");
  if (params != j.end() && params->is_object()) {
    scaling = &*params;
    KV_ASSIGN_OR_RETURN(auto theta, OptFloat(*params, "rope_theta", 1e-3, 1e12));
    if (theta) c.rope_theta = static_cast<float>(*theta);
  } else {
    KV_ASSIGN_OR_RETURN(auto theta, OptFloat(j, "rope_theta", 1e-3, 1e12));
    if (theta) c.rope_theta = static_cast<float>(*theta);
    auto rs = j.find("rope_scaling");
    if (rs != j.end() && !rs->is_null()) {
      if (!rs->is_object()) return Bad("rope_scaling", "expected an object or null");
      scaling = &*rs;
    }
  }
  if (scaling == nullptr) return absl::OkStatus();
  std::string type = OptString(*scaling, "rope_type").value_or(
      OptString(*scaling, "type").value_or("default"));
  if (type == "default") return absl::OkStatus();
  if (type != "llama3" && type != "linear") {
    return absl::FailedPreconditionError(absl::StrCat(
        "config.json: rope type '", type, "' is not supported, expected default, linear or "
        "llama3"));
  }
  c.rope_scaling.type = type;
  KV_ASSIGN_OR_RETURN(auto factor, OptFloat(*scaling, "factor", 1e-6, 1e6));
  if (!factor) return Bad("rope_scaling.factor", "missing");
  c.rope_scaling.factor = static_cast<float>(*factor);
  if (type == "llama3") {
    KV_ASSIGN_OR_RETURN(auto low, OptFloat(*scaling, "low_freq_factor", 1e-6, 1e6));
    KV_ASSIGN_OR_RETURN(auto high, OptFloat(*scaling, "high_freq_factor", 1e-6, 1e6));
    KV_ASSIGN_OR_RETURN(auto orig, OptInt(*scaling, "original_max_position_embeddings", 1,
                                          kMaxContext));
    if (!low || !high || !orig) {
      return Bad("rope_scaling", "llama3 needs low_freq_factor, high_freq_factor and "
                                 "original_max_position_embeddings");
    }
    if (!(*high > *low)) {
      return Bad("rope_scaling.high_freq_factor",
                 absl::StrFormat("%g, expected more than low_freq_factor %g", *high, *low));
    }
    c.rope_scaling.low_freq_factor = static_cast<float>(*low);
    c.rope_scaling.high_freq_factor = static_cast<float>(*high);
    c.rope_scaling.original_max_position = *orig;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseHfConfig(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json: not a JSON object");
  }
  ModelConfig c;
  KV_ASSIGN_OR_RETURN(c.architecture, Architecture(j));
  c.name = OptString(j, "_name_or_path").value_or("");
  KV_ASSIGN_OR_RETURN(c.n_layers, ReqInt(j, "num_hidden_layers", 1, kMaxLayers));
  KV_ASSIGN_OR_RETURN(c.hidden, ReqInt(j, "hidden_size", 1, kMaxWidth));
  KV_ASSIGN_OR_RETURN(c.intermediate, ReqInt(j, "intermediate_size", 1, kMaxWidth));
  KV_ASSIGN_OR_RETURN(c.n_heads, ReqInt(j, "num_attention_heads", 1, kMaxHeads));
  KV_ASSIGN_OR_RETURN(auto kv, OptInt(j, "num_key_value_heads", 1, kMaxHeads));
  c.n_kv_heads = kv.value_or(c.n_heads);
  if (c.n_heads % c.n_kv_heads != 0) {
    return Bad("num_key_value_heads", absl::StrFormat("%d does not divide num_attention_heads %d",
                                                      c.n_kv_heads, c.n_heads));
  }
  KV_ASSIGN_OR_RETURN(auto head_dim, OptInt(j, "head_dim", 1, kMaxWidth));
  if (!head_dim && c.hidden % c.n_heads != 0) {
    return Bad("num_attention_heads", absl::StrFormat(
        "%d does not divide hidden_size %d and no head_dim is given", c.n_heads, c.hidden));
  }
  c.head_dim = head_dim.value_or(c.hidden / c.n_heads);
  if (c.head_dim % 2 != 0) {
    return Bad("head_dim", absl::StrFormat("%d is odd; RoPE pairs need it even", c.head_dim));
  }
  KV_ASSIGN_OR_RETURN(c.vocab_size, ReqInt(j, "vocab_size", 1, kMaxVocab));
  KV_ASSIGN_OR_RETURN(c.context_length, ReqInt(j, "max_position_embeddings", 1, kMaxContext));
  KV_ASSIGN_OR_RETURN(auto eps, OptFloat(j, "rms_norm_eps", 1e-30, 1));
  if (eps) c.rms_eps = static_cast<float>(*eps);
  KV_RETURN_IF_ERROR(ReadRope(j, c));

  // transformers' defaults: Llama/Mistral/Qwen2 configs untie unless told.
  KV_ASSIGN_OR_RETURN(auto tie, OptBool(j, "tie_word_embeddings"));
  c.tie_embeddings = tie.value_or(false);
  KV_ASSIGN_OR_RETURN(auto bias, OptBool(j, "attention_bias"));
  c.qkv_bias = c.architecture == "qwen2" || bias.value_or(false);
  KV_ASSIGN_OR_RETURN(auto mlp_bias, OptBool(j, "mlp_bias"));
  if (mlp_bias.value_or(false)) {
    return absl::FailedPreconditionError("config.json: \"mlp_bias\": true is not supported");
  }
  const std::string act = OptString(j, "hidden_act").value_or("silu");
  if (act != "silu") {
    return absl::FailedPreconditionError(absl::StrCat(
        "config.json: \"hidden_act\": '", act, "' is not supported, expected silu"));
  }
  return c;
}

}  // namespace kvstream::loader
