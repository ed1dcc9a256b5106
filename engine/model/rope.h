// Rotary position embedding (Su et al. 2021, "RoFormer"), in the
// rotate-half layout Hugging Face uses (GGUF Q/K rows are un-permuted at load,
// engine/model/loader/), with Llama-3 frequency scaling.
#pragma once

#include <ATen/core/Tensor.h>

#include "engine/model/model_config.h"

namespace kvstream {

class Rope {
 public:
  Rope(const ModelConfig& config, c10::Device device);

  // positions [N] int64 -> cos, sin [N, D/2] fp32.
  void Tables(const at::Tensor& positions, at::Tensor* cos, at::Tensor* sin) const;
  // x [N, heads, D] rotated in place by the tables of its rows.
  static void Apply(at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

  const at::Tensor& inv_freq() const { return inv_freq_; }

 private:
  at::Tensor inv_freq_;  // [D/2] fp32
};

}  // namespace kvstream
