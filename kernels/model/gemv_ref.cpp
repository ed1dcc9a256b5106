// CPU twin of kernels/model/gemv.h.
#include <cmath>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/model/gemv.h"

namespace kvstream {

const char* GemvValidate(const GemvParams& p) {
  if (p.x == nullptr || p.w == nullptr || p.y == nullptr) return "x, w and y must be set";
  if (p.rows < 1 || p.rows > kGemvMaxRows) return "rows must be in [1, 8]";
  if (p.out_features < 1) return "out_features must be >= 1";
  if (p.in_features < 8 || p.in_features % 8 != 0) return "in_features must be a positive multiple of 8";
  if (p.dtype != KvDType::kBf16 && p.dtype != KvDType::kFp16) return "dtype must be bf16 or fp16";
  const int64_t xs = p.x_stride ? p.x_stride : p.in_features;
  const int64_t ys = p.y_stride ? p.y_stride : p.out_features;
  if (xs < p.in_features || xs % 8 != 0) return "x_stride must be >= in_features and a multiple of 8";
  if (ys < p.out_features) return "y_stride must be >= out_features";
  if (p.norm_weight == nullptr && (p.delta != nullptr || p.residual_out != nullptr)) {
    return "delta and residual_out need norm_weight";
  }
  if (p.norm_weight != nullptr) {
    if (static_cast<int64_t>(p.rows) * p.in_features * 4 > kGemvNormMaxSmemBytes) {
      return "norm prologue needs rows * in_features * 4 <= 48 KiB";
    }
    if ((p.delta == nullptr) != (p.residual_out == nullptr)) return "delta and residual_out go together";
    if (!(p.eps >= 0.f)) return "eps must be >= 0";
  }
  return nullptr;
}

bool GemvRef(const GemvParams& p) {
  if (GemvValidate(p) != nullptr) return false;
  const bool bf16 = p.dtype == KvDType::kBf16;
  auto load = [bf16](const void* base, int64_t i) {
    const uint16_t b = static_cast<const uint16_t*>(base)[i];
    return bf16 ? Bf16BitsToFloat(b) : HalfBitsToFloat(b);
  };
  const int64_t K = p.in_features, N = p.out_features;
  const int64_t xs = p.x_stride ? p.x_stride : K;
  const int64_t ys = p.y_stride ? p.y_stride : N;
  auto round = [bf16](float v) { return bf16 ? Bf16BitsToFloat(FloatToBf16Bits(v)) : HalfBitsToFloat(FloatToHalfBits(v)); };
  std::vector<float> xf(static_cast<size_t>(p.rows * K));
  for (int m = 0; m < p.rows; ++m) {
    for (int64_t k = 0; k < K; ++k) xf[m * K + k] = load(p.x, m * xs + k);
    if (p.norm_weight == nullptr) continue;
    float ss = 0.f;
    for (int64_t k = 0; k < K; ++k) {
      float& v = xf[m * K + k];
      if (p.delta != nullptr) {
        v = round(v + load(p.delta, m * K + k));
        static_cast<uint16_t*>(p.residual_out)[m * K + k] = bf16 ? FloatToBf16Bits(v) : FloatToHalfBits(v);
      }
      ss += v * v;
    }
    const float inv = 1.f / std::sqrt(ss / static_cast<float>(K) + p.eps);
    for (int64_t k = 0; k < K; ++k) {
      float& v = xf[m * K + k];
      v = round(load(p.norm_weight, k) * round(v * inv));
    }
  }
  uint16_t* y = static_cast<uint16_t*>(p.y);
  for (int64_t n = 0; n < N; ++n) {
    for (int m = 0; m < p.rows; ++m) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc += load(p.w, n * K + k) * xf[m * K + k];
      if (p.bias != nullptr) acc += load(p.bias, n);
      y[m * ys + n] = bf16 ? FloatToBf16Bits(acc) : FloatToHalfBits(acc);
    }
  }
  return true;
}

}  // namespace kvstream
