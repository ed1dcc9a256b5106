// Hugging Face folder -> LoadedWeights: config.json, the safetensors
// shard(s) (model.safetensors.index.json's "weight_map", or a single
// model.safetensors), tokenizer.json and optional tokenizer_config.json.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/model/loader/weights.h"

namespace kvstream::loader {

// Every tensor is checked against config.json's shapes; names other than
// the Llama-family state dict are rejected, except the rotary
// `inv_freq` buffers older checkpoints carry, which are skipped. When
// tie_word_embeddings is set, a stored lm_head.weight is dropped (transformers
// ties it to the embedding on load).
absl::StatusOr<LoadedWeights> LoadHfFolder(const std::string& dir);

}  // namespace kvstream::loader
