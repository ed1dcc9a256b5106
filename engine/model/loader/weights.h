// One loader for every weight format kvstream reads. The format is picked
// from the path: a `.gguf` file, or a Hugging Face folder holding
// config.json + *.safetensors (+ tokenizer.json).
//
// Every tensor comes out dequantized to fp32 under its Hugging Face name
// ("model.layers.3.self_attn.q_proj.weight", shape [out, in] row-major), with
// GGUF's Q/K row permutation undone, so the forward pass has one layout.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer_data.h"

namespace kvstream {

struct HostTensor {
  std::vector<int64_t> shape;  // outermost first (PyTorch order)
  std::vector<float> data;     // row-major, product(shape) elements
  std::string source_dtype;    // dtype in the file, e.g. "Q4_1", "F32", "BF16"
  // For 2-D GGUF tensors stored as Q4_1 or Q8_0: the file's blocks, rows in
  // the same (unpermuted) order as `data`, so CPU decode can read 0.6-1.1
  // bytes a weight instead of 4 (engine/model/packed_matrix.h). Empty otherwise.
  uint32_t packed_type = 0;    // loader::GgmlType id, valid when `packed` is non-empty
  std::vector<uint8_t> packed;
};

struct LoadedWeights {
  ModelConfig config;
  TokenizerData tokenizer;
  std::map<std::string, HostTensor> tensors;  // HF names; no "lm_head.weight" when tied
  std::string format;                         // "gguf" or "safetensors"
  int64_t file_bytes = 0;
};

// Reads, validates and dequantizes everything. Errors name the file, the key
// or tensor, and the bad vs expected value; never crashes on a malformed file.
absl::StatusOr<LoadedWeights> LoadWeights(const std::string& path);

}  // namespace kvstream
