// Real architectures' shapes for the synthetic-weights mode
// (`--synthetic=llama3-8b`): performance at sizes no weight file can be
// carried for. The tokenizer is byte-level with no merges (one id per UTF-8
// byte) so text prompts still work; its ids cover the model's vocabulary.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer_data.h"

namespace kvstream {

// "llama3-8b", "llama3-70b", "qwen2.5-7b", "smollm2-135m".
absl::StatusOr<ModelConfig> SyntheticConfig(const std::string& name);
std::vector<std::string> SyntheticNames();
TokenizerData SyntheticTokenizer(int64_t vocab_size);

}  // namespace kvstream
