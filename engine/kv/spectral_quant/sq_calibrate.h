// SpectralQuant calibration (spectral_quant.md §4.1, §6.1-6.3): the
// uncentered second moment C = X^T X / n of raw post-RoPE K and raw V per
// (layer, KV head), accumulated in fp64 (at::matmul on the model's device),
// then eigh in fp64 on the CPU, eigenvalues descending and clamped at 0,
// each eigenvector's largest-|.| entry made positive (§6.3). [kvstream
// choice, issue 11] The same pass also sums the vectors: the profile holds
// each (layer, head, type)'s mean mu and the eigh of C - mu mu^T, which the
// centred plans code (center_keys / center_values, sq_config.h).
//
// The model run: SqCalibrateModel drives LlamaModel::Forward with a
// recording strategy whose SequenceCache wraps the dense cache and adds every
// layer's K/V (before GQA repetition) to the accumulator, so no engine/model
// or engine/runtime code changes. Limits: at most 50,000 tokens per layer
// and 512 texts (the seed's and (U)'s), batch 1.
//
// [kvstream choice] Texts are packed back to back into sequences of up to
// the model's context (at most 8192 tokens), where the seed truncates each
// text at 2048. Post-RoPE keys depend on position: the slow RoPE pairs
// barely turn within one short text, so a profile measured on 540-token
// texts has almost no variance in directions those pairs reach at position
// 4000, and keys there are coded with the wrong sigmas (SmolLM2-135M,
// teacher-forced ppl ratio at defaults on a 736-token document: 1.99 with
// 540-token texts, 1.46 packed; tests/engine/kv/spectral_quant/
// sq_perplexity_test.cc).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/spectral_quant/sq_profile.h"

namespace kvstream {

class LlamaModel;
class Tokenizer;

inline constexpr int64_t kSqCalibMaxSequenceTokens = 8192;
// Part of the user-cache folder name: profiles made by an older recipe are
// not reused (the server or `kvstream calibrate --skip-existing` redoes them).
inline constexpr const char* kSqCalibRecipe = "packed";
inline constexpr int64_t kSqCalibMaxTokensPerLayer = 50000;
inline constexpr int64_t kSqCalibMaxTexts = 512;

class SqCovariance {
 public:
  SqCovariance(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim,
               int64_t max_tokens_per_layer = kSqCalibMaxTokensPerLayer);

  // k, v [Hkv, n, D] (any float dtype/device): adds the first tokens of the
  // chunk that fit under the per-layer cap. Returns tokens added.
  int64_t Add(int64_t layer, const at::Tensor& k, const at::Tensor& v);
  int64_t tokens(int64_t layer) const { return count_[layer]; }
  bool Full() const;

  // eigh of every (l, h, t); a layer with fewer than 2 samples is an error
  // (a missing table is a load error, §6.10).
  absl::StatusOr<SqProfile> Finish(const std::string& name, uint64_t model_hash) const;

 private:
  int64_t L_, H_, D_, cap_;
  std::vector<at::Tensor> xtx_;  // per layer: fp64 [2, Hkv, D, D] (K then V)
  std::vector<at::Tensor> sum_;  // per layer: fp64 [2, Hkv, D] sums (the means, centred spectra)
  std::vector<int64_t> count_;   // per layer tokens added
};

// Eigendecomposition of one fp64 [D, D] second moment `c` (already divided
// by n): lambda descending, clamped >= 0, sign convention applied.
SqSpectrum SqEigen(const at::Tensor& c, uint64_t n_samples);

// Progress: (texts done, texts total, tokens of layer 0 so far).
using SqProgressFn = std::function<void(int64_t, int64_t, int64_t)>;

// Runs `texts` through `model` (batch 1, whole text as one prompt step) and
// returns the profile. Stops early once every layer reached its token cap.
absl::StatusOr<SqProfile> SqCalibrateModel(LlamaModel& model, const Tokenizer& tokenizer,
                                           const std::vector<std::string>& texts, const std::string& name,
                                           uint64_t model_hash, const SqProgressFn& progress = nullptr);

// Texts of a corpus file: texts separated by a line "---", paragraphs inside
// a text by blank lines (kept as "\n\n"); lines that start with '#' are
// comments. At most kSqCalibMaxTexts are kept.
absl::StatusOr<std::vector<std::string>> SqReadCorpus(const std::string& path);

}  // namespace kvstream
