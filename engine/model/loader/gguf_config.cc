// GGUF metadata -> ModelConfig and TokenizerData. Key names follow
// llama.cpp's llama-arch.cpp (LLM_KV_*), prefixed with the architecture.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/loader/gguf_metadata.h"
#include "engine/model/loader/gguf_weights.h"
#include "engine/status_macros.h"

namespace kvstream::loader {
namespace {

// Generous bounds: they exist to stop absurd values (a 2^40-layer model)
// before anything sized by them is allocated, not to police real models.
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxWidth = int64_t{1} << 20;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxContext = int64_t{1} << 26;

absl::Status Bad(absl::string_view what, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat("gguf: ", what, ": ", msg));
}

absl::Status ReadRopeScaling(const GgufFile& f, const std::string& p, ModelConfig& c) {
  KV_ASSIGN_OR_RETURN(auto type, GetOptString(f, p + "rope.scaling.type"));
  const std::string t = type.value_or("none");
  if (t == "none") {
    c.rope_scaling.type = "";
  } else if (t == "linear" || t == "llama3") {
    c.rope_scaling.type = t;
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "gguf: key '", p, "rope.scaling.type': '", t,
        "' is not supported, expected none, linear or llama3"));
  }
  KV_ASSIGN_OR_RETURN(auto factor, GetOptFloat(f, p + "rope.scaling.factor", 1e-6, 1e6));
  if (factor) c.rope_scaling.factor = static_cast<float>(*factor);
  KV_ASSIGN_OR_RETURN(auto orig,
                      GetOptInt(f, p + "rope.scaling.original_context_length", 1, kMaxContext));
  if (orig) c.rope_scaling.original_max_position = *orig;
  KV_ASSIGN_OR_RETURN(auto low, GetOptFloat(f, p + "rope.scaling.low_freq_factor", 1e-6, 1e6));
  if (low) c.rope_scaling.low_freq_factor = static_cast<float>(*low);
  KV_ASSIGN_OR_RETURN(auto high, GetOptFloat(f, p + "rope.scaling.high_freq_factor", 1e-6, 1e6));
  if (high) c.rope_scaling.high_freq_factor = static_cast<float>(*high);
  return absl::OkStatus();
}

// Reads one special token id; -1 when absent. Present ids must be < n_tokens.
absl::StatusOr<int32_t> TokenId(const GgufFile& f, absl::string_view key, int64_t n_tokens) {
  KV_ASSIGN_OR_RETURN(auto id, GetOptInt(f, key, 0, n_tokens - 1));
  return id ? static_cast<int32_t>(*id) : -1;
}

}  // namespace

absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& f) {
  ModelConfig c;
  KV_ASSIGN_OR_RETURN(auto arch, GetOptString(f, "general.architecture"));
  if (!arch) return Bad("key 'general.architecture'", "missing");
  if (*arch != "llama" && *arch != "qwen2" && *arch != "mistral") {
    return absl::FailedPreconditionError(absl::StrCat(
        "gguf: key 'general.architecture': '", *arch,
        "' is not supported, expected llama, qwen2 or mistral"));
  }
  c.architecture = *arch;
  KV_ASSIGN_OR_RETURN(auto name, GetOptString(f, "general.name"));
  c.name = name.value_or("");

  const std::string p = c.architecture + ".";
  KV_ASSIGN_OR_RETURN(c.n_layers, GetInt(f, p + "block_count", 1, kMaxLayers));
  KV_ASSIGN_OR_RETURN(c.hidden, GetInt(f, p + "embedding_length", 1, kMaxWidth));
  KV_ASSIGN_OR_RETURN(c.intermediate, GetInt(f, p + "feed_forward_length", 1, kMaxWidth));
  KV_ASSIGN_OR_RETURN(c.n_heads, GetInt(f, p + "attention.head_count", 1, kMaxHeads));
  KV_ASSIGN_OR_RETURN(auto kv_heads, GetOptInt(f, p + "attention.head_count_kv", 1, kMaxHeads));
  c.n_kv_heads = kv_heads.value_or(c.n_heads);  // absent = multi-head attention
  if (c.n_heads % c.n_kv_heads != 0) {
    return Bad(p + "attention.head_count_kv",
               absl::StrFormat("%d does not divide head_count %d", c.n_kv_heads, c.n_heads));
  }
  KV_ASSIGN_OR_RETURN(auto key_len, GetOptInt(f, p + "attention.key_length", 1, kMaxWidth));
  if (!key_len && c.hidden % c.n_heads != 0) {
    return Bad(p + "attention.head_count",
               absl::StrFormat("%d does not divide embedding_length %d and no "
                               "attention.key_length is given", c.n_heads, c.hidden));
  }
  c.head_dim = key_len.value_or(c.hidden / c.n_heads);
  if (c.head_dim % 2 != 0) {
    return Bad(p + "attention.key_length", absl::StrFormat("%d is odd; RoPE pairs need an "
                                                           "even head_dim", c.head_dim));
  }
  KV_ASSIGN_OR_RETURN(auto val_len, GetOptInt(f, p + "attention.value_length", 1, kMaxWidth));
  if (val_len && *val_len != c.head_dim) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "gguf: key '%sattention.value_length': %d, expected key_length %d", p, *val_len,
        c.head_dim));
  }
  // Llama-family models rotate the whole head; partial rotary is unsupported.
  KV_ASSIGN_OR_RETURN(auto rot, GetOptInt(f, p + "rope.dimension_count", 1, kMaxWidth));
  if (rot && *rot != c.head_dim) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "gguf: key '%srope.dimension_count': %d, expected head_dim %d (partial rotary is "
        "not supported)", p, *rot, c.head_dim));
  }
  KV_ASSIGN_OR_RETURN(c.context_length, GetInt(f, p + "context_length", 1, kMaxContext));
  KV_ASSIGN_OR_RETURN(auto eps, GetOptFloat(f, p + "attention.layer_norm_rms_epsilon", 0, 1));
  if (eps) c.rms_eps = static_cast<float>(*eps);
  if (!(c.rms_eps > 0)) return Bad(p + "attention.layer_norm_rms_epsilon", "must be > 0");
  KV_ASSIGN_OR_RETURN(auto theta, GetOptFloat(f, p + "rope.freq_base", 1e-3, 1e12));
  if (theta) c.rope_theta = static_cast<float>(*theta);
  KV_RETURN_IF_ERROR(ReadRopeScaling(f, p, c));

  // Vocabulary size: the explicit key, else the token list's length.
  KV_ASSIGN_OR_RETURN(auto vocab, GetOptInt(f, p + "vocab_size", 1, kMaxVocab));
  if (vocab) {
    c.vocab_size = *vocab;
  } else {
    KV_ASSIGN_OR_RETURN(const std::vector<std::string>* tokens,
                        GetOptStringArray(f, "tokenizer.ggml.tokens"));
    if (tokens == nullptr || tokens->empty()) {
      return Bad(p + "vocab_size", "missing and no tokenizer.ggml.tokens to count");
    }
    c.vocab_size = static_cast<int64_t>(tokens->size());
  }
  // tie_embeddings and qkv_bias depend on the tensors: PlanGgufTensors sets them.
  return c;
}

absl::StatusOr<TokenizerData> GgufTokenizerData(const GgufFile& f, int64_t vocab_size) {
  TokenizerData t;
  KV_ASSIGN_OR_RETURN(auto model, GetOptString(f, "tokenizer.ggml.model"));
  if (!model) return Bad("key 'tokenizer.ggml.model'", "missing");
  t.model = *model;
  KV_ASSIGN_OR_RETURN(auto pre, GetOptString(f, "tokenizer.ggml.pre"));
  t.pre = pre.value_or("");

  KV_ASSIGN_OR_RETURN(const std::vector<std::string>* tokens,
                      GetOptStringArray(f, "tokenizer.ggml.tokens"));
  if (tokens == nullptr || tokens->empty()) return Bad("key 'tokenizer.ggml.tokens'", "missing");
  const int64_t n = static_cast<int64_t>(tokens->size());
  if (n > vocab_size) {
    return Bad("key 'tokenizer.ggml.tokens'", absl::StrFormat(
        "%d tokens, expected at most vocab_size %d", n, vocab_size));
  }
  t.tokens = *tokens;

  KV_ASSIGN_OR_RETURN(auto types, GetOptIntArray(f, "tokenizer.ggml.token_type"));
  if (types) {
    if (static_cast<int64_t>(types->size()) != n) {
      return Bad("key 'tokenizer.ggml.token_type'", absl::StrFormat(
          "%u entries, expected one per token (%d)", types->size(), n));
    }
    t.token_types.reserve(types->size());
    for (size_t i = 0; i < types->size(); ++i) {
      const int64_t v = (*types)[i];
      if (v < 0 || v > static_cast<int64_t>(TokenType::kByte)) {
        return Bad("key 'tokenizer.ggml.token_type'", absl::StrFormat(
            "entry %u is %d, expected 0..%d", i, v, static_cast<int>(TokenType::kByte)));
      }
      t.token_types.push_back(static_cast<TokenType>(v));
    }
  }
  KV_ASSIGN_OR_RETURN(const std::vector<std::string>* merges,
                      GetOptStringArray(f, "tokenizer.ggml.merges"));
  if (merges != nullptr) t.merges = *merges;

  KV_ASSIGN_OR_RETURN(t.bos_id, TokenId(f, "tokenizer.ggml.bos_token_id", n));
  KV_ASSIGN_OR_RETURN(t.eos_id, TokenId(f, "tokenizer.ggml.eos_token_id", n));
  KV_ASSIGN_OR_RETURN(t.pad_id, TokenId(f, "tokenizer.ggml.padding_token_id", n));
  KV_ASSIGN_OR_RETURN(t.unk_id, TokenId(f, "tokenizer.ggml.unknown_token_id", n));
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    KV_ASSIGN_OR_RETURN(int32_t id, TokenId(f, key, n));
    if (id >= 0 && id != t.eos_id &&
        std::find(t.extra_eos_ids.begin(), t.extra_eos_ids.end(), id) == t.extra_eos_ids.end()) {
      t.extra_eos_ids.push_back(id);
    }
  }
  KV_ASSIGN_OR_RETURN(auto add_bos, GetOptBool(f, "tokenizer.ggml.add_bos_token"));
  t.add_bos = add_bos.value_or(false);
  KV_ASSIGN_OR_RETURN(auto add_eos, GetOptBool(f, "tokenizer.ggml.add_eos_token"));
  t.add_eos = add_eos.value_or(false);
  KV_ASSIGN_OR_RETURN(auto tmpl, GetOptString(f, "tokenizer.chat_template"));
  t.chat_template = tmpl.value_or("");
  return t;
}

}  // namespace kvstream::loader
