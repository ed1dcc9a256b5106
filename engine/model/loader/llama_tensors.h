// The Llama-family state dict (transformers' LlamaForCausalLM /
// Qwen2ForCausalLM / MistralForCausalLM names), shared by the GGUF and
// safetensors readers so both check tensors against the config the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model_config.h"

namespace kvstream::loader {

// Expected PyTorch shape of the tensor `hf_name` under `config`:
//   model.embed_tokens.weight, lm_head.weight        [vocab, hidden]
//   model.norm.weight, *_layernorm.weight            [hidden]
//   self_attn.q_proj.weight / .bias                  [H*D, hidden] / [H*D]
//   self_attn.k_proj, v_proj .weight / .bias         [Hkv*D, hidden] / [Hkv*D]
//   self_attn.o_proj.weight                          [hidden, H*D]
//   mlp.gate_proj, up_proj .weight                   [inter, hidden]
//   mlp.down_proj.weight                             [hidden, inter]
//   rope_freqs (Llama-3 GGUF RoPE factors)           [D/2]
// InvalidArgument (naming the tensor) for any other name or a layer index
// outside 0..n_layers-1.
absl::StatusOr<std::vector<int64_t>> LlamaTensorShape(const ModelConfig& config,
                                                      absl::string_view hf_name);

// Checks that `names` holds every tensor the config needs: embeddings, final
// norm, 9 tensors per layer, lm_head unless tied, q/k/v biases in every layer
// iff config.qkv_bias (and in no layer otherwise).
absl::Status CheckLlamaTensorSet(const ModelConfig& config,
                                 const absl::flat_hash_set<std::string>& names);

std::string ShapeString(const std::vector<int64_t>& shape);  // "[576, 49152]"

}  // namespace kvstream::loader
