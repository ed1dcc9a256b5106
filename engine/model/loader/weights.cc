// LoadWeights: picks the reader from the path (a .gguf file, or a Hugging
// Face folder) and hands over to it.
#include "engine/model/loader/weights.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/model/loader/gguf_weights.h"
#include "engine/model/loader/hf_weights.h"

namespace kvstream {

absl::StatusOr<LoadedWeights> LoadWeights(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return absl::NotFoundError(absl::StrCat("model path not found: ", path));
  }
  if (std::filesystem::is_directory(status)) return loader::LoadHfFolder(path);
  if (absl::EndsWithIgnoreCase(path, ".gguf")) return loader::LoadGgufWeights(path);
  return absl::InvalidArgumentError(absl::StrCat(
      "model path ", path, " is neither a .gguf file nor a Hugging Face folder "
      "(config.json + *.safetensors)"));
}

}  // namespace kvstream
