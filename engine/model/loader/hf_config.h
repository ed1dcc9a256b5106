// Hugging Face config.json -> ModelConfig for LlamaForCausalLM,
// Qwen2ForCausalLM and MistralForCausalLM. Reads both the transformers 4.x
// spelling (top-level "rope_theta" + "rope_scaling") and the 5.x one
// ("rope_parameters" holding rope_theta and the scaling fields).
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model_config.h"

namespace kvstream::loader {

// Errors name the field and the bad vs expected value. Features the runner
// does not implement (yarn/dynamic RoPE, MLP bias, a non-SiLU activation)
// are FailedPrecondition.
absl::StatusOr<ModelConfig> ParseHfConfig(absl::string_view config_json);

}  // namespace kvstream::loader
