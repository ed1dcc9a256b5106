#include "engine/model/rope.h"

#include <ATen/ATen.h>

#include <cmath>

namespace kvstream {

Rope::Rope(const ModelConfig& config, c10::Device device) {
  const int64_t d = config.head_dim;
  // inv_freq_i = theta^(-2i/d), computed as Hugging Face does (fp32 exponent).
  at::Tensor exponent = at::arange(0, d, 2, at::kLong).to(at::kFloat).div(static_cast<double>(d));
  at::Tensor inv = at::pow(static_cast<double>(config.rope_theta), exponent).reciprocal();
  const RopeScaling& rs = config.rope_scaling;
  if (rs.type == "linear") {
    inv = inv / rs.factor;
  } else if (rs.type == "llama3") {
    // Llama 3.1 scaling: long wavelengths divided by `factor`, short ones
    // kept, a linear blend in between (Meta's reference, also in HF's
    // _compute_llama3_parameters).
    const double old_ctx = static_cast<double>(rs.original_max_position);
    const double low_wavelen = old_ctx / rs.low_freq_factor;
    const double high_wavelen = old_ctx / rs.high_freq_factor;
    at::Tensor wavelen = (2.0 * M_PI) / inv;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv / rs.factor, inv);
    at::Tensor smooth = (old_ctx / wavelen - rs.low_freq_factor) /
                        (rs.high_freq_factor - rs.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled;
    at::Tensor medium = at::logical_not(wavelen < high_wavelen).logical_and(
        at::logical_not(wavelen > low_wavelen));
    inv = at::where(medium, smoothed, scaled);
  }
  inv_freq_ = inv.to(device);
}

void Rope::Tables(const at::Tensor& positions, at::Tensor* cos, at::Tensor* sin) const {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [N, D/2]
  *cos = freqs.cos();
  *sin = freqs.sin();
}

void Rope::Apply(at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(2) / 2;
  at::Tensor c = cos.unsqueeze(1).to(x.scalar_type());  // [N, 1, D/2]
  at::Tensor s = sin.unsqueeze(1).to(x.scalar_type());
  at::Tensor x1 = x.narrow(2, 0, half);
  at::Tensor x2 = x.narrow(2, half, half);
  at::Tensor r1 = x1 * c - x2 * s;
  at::Tensor r2 = x2 * c + x1 * s;
  x1.copy_(r1);
  x2.copy_(r2);
}

}  // namespace kvstream
