// Architecture hyper-parameters of a Llama-family model, read from GGUF
// metadata or a Hugging Face config.json. No torch here: the readers that fill
// it build without libtorch.
#pragma once

#include <cstdint>
#include <string>

namespace kvstream {

// Llama-3 style frequency-dependent RoPE scaling ("rope_type": "llama3").
struct RopeScaling {
  std::string type;               // "" = none, "llama3", "linear"
  float factor = 1.0f;            // context extension factor
  float low_freq_factor = 1.0f;   // llama3 only
  float high_freq_factor = 4.0f;  // llama3 only
  int64_t original_max_position = 8192;  // llama3 only
};

struct ModelConfig {
  std::string name;          // human name, e.g. "SmolLM2 135M Instruct"
  std::string architecture;  // "llama", "qwen2", "mistral" (lower case)
  int64_t n_layers = 0;
  int64_t hidden = 0;        // d_model
  int64_t intermediate = 0;  // SwiGLU inner width
  int64_t n_heads = 0;       // query heads
  int64_t n_kv_heads = 0;    // key/value heads (GQA)
  int64_t head_dim = 0;      // usually hidden / n_heads
  int64_t vocab_size = 0;
  int64_t context_length = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;  // lm_head shares token embedding weights
  bool qkv_bias = false;        // Qwen2: q/k/v projections carry a bias
};

}  // namespace kvstream
