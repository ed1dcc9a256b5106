// GGUF (Llama family: general.architecture llama, qwen2, mistral) ->
// LoadedWeights. Split in stages so a caller can validate a file cheaply
// (config, tokenizer, tensor plan: no tensor data read) before paying for
// dequantization; the fuzz test relies on that.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/loader/gguf_reader.h"
#include "engine/model/loader/weights.h"

namespace kvstream::loader {

// ModelConfig from `{arch}.*` and `general.*` keys, range-checked.
absl::StatusOr<ModelConfig> GgufModelConfig(const GgufFile& f);

// TokenizerData from `tokenizer.ggml.*` / `tokenizer.chat_template`; every
// special id must lie inside the token list, and the token list inside
// `vocab_size`.
absl::StatusOr<TokenizerData> GgufTokenizerData(const GgufFile& f, int64_t vocab_size);

// Where one GGUF tensor goes.
struct GgufTensorPlan {
  size_t index = 0;             // into GgufFile::tensors
  std::string hf_name;          // "model.layers.3.self_attn.q_proj.weight", or "rope_freqs"
  std::vector<int64_t> shape;   // PyTorch order (ggml ne reversed)
  // > 0: undo llama.cpp's Q/K row permutation, taking rows as this many heads.
  int64_t unpermute_heads = 0;
};

// Maps every tensor to its Hugging Face name and checks its shape against
// `config`; rejects unknown or missing tensors. Sets config.tie_embeddings
// and config.qkv_bias from which tensors exist.
absl::StatusOr<std::vector<GgufTensorPlan>> PlanGgufTensors(const GgufFile& f,
                                                            ModelConfig& config);

// Dequantizes one planned tensor to fp32 (and unpermutes Q/K rows).
absl::StatusOr<HostTensor> MaterializeGgufTensor(const GgufFile& f, const GgufTensorPlan& plan);

// All stages. `dequantize` = false stops after planning (tensors left empty).
absl::StatusOr<LoadedWeights> GgufToWeights(const GgufFile& f, bool dequantize = true);

// Maps, parses and converts a .gguf file; errors are prefixed with the path.
absl::StatusOr<LoadedWeights> LoadGgufWeights(const std::string& path);

}  // namespace kvstream::loader
