// CPU twin of kernels/model/gemv.h.
#include <cmath>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/model/fused_ops.h"
#include "kernels/model/gemv.h"

namespace kvstream {

const char* GemvValidate(const GemvParams& p) {
  if (p.x == nullptr || p.w == nullptr || p.y == nullptr) return "x, w and y must be set";
  if (p.rows < 1 || p.rows > kGemvMaxRows) return "rows must be in [1, 8]";
  if (p.out_features < 1) return "out_features must be >= 1";
  if (p.in_features < 8 || p.in_features % 8 != 0) return "in_features must be a positive multiple of 8";
  if (p.dtype != KvDType::kBf16 && p.dtype != KvDType::kFp16) return "dtype must be bf16 or fp16";
  const int64_t xs = p.x_stride ? p.x_stride : p.in_features;
  if (xs < p.in_features || xs % 8 != 0) return "x_stride must be >= in_features and a multiple of 8";
  switch (p.epilogue) {
    case GemvEpilogue::kNone: break;
    case GemvEpilogue::kSiluMul:
      if (p.out_features % 16 != 0) return "kSiluMul needs out_features (gate + up rows) a multiple of 16";
      break;
    case GemvEpilogue::kRope:
      if (p.head_dim < 2 || p.head_dim % 2 != 0) return "kRope needs an even head_dim >= 2";
      if (p.out_features % p.head_dim != 0) return "kRope needs out_features a multiple of head_dim";
      if (p.rope_heads < 0 || p.rope_heads > p.out_features / p.head_dim) {
        return "rope_heads must be in [0, out_features / head_dim]";
      }
      if (p.positions == nullptr || p.inv_freq == nullptr) return "kRope needs positions and inv_freq";
      break;
    default: return "epilogue must be kNone, kSiluMul or kRope";
  }
  if (p.epilogue != GemvEpilogue::kNone && p.rows > kGemvEpilogueMaxRows) return "epilogues need rows in [1, 2]";
  const int64_t ys = p.y_stride ? p.y_stride : GemvOutColumns(p);
  if (ys < GemvOutColumns(p)) return "y_stride must be >= the output columns (out_features, or half under kSiluMul)";
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

int GemvOutColumns(const GemvParams& p) {
  return p.epilogue == GemvEpilogue::kSiluMul ? p.out_features / 2 : p.out_features;
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
  const int64_t ys = p.y_stride ? p.y_stride : GemvOutColumns(p);
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
  // The projection, rounded once; with an epilogue into a [M, N] scratch.
  std::vector<uint16_t> scratch;
  uint16_t* y = static_cast<uint16_t*>(p.y);
  int64_t y_stride = ys;
  if (p.epilogue != GemvEpilogue::kNone) {
    scratch.resize(static_cast<size_t>(p.rows * N));
    y = scratch.data();
    y_stride = N;
  }
  for (int64_t n = 0; n < N; ++n) {
    for (int m = 0; m < p.rows; ++m) {
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc += load(p.w, n * K + k) * xf[m * K + k];
      if (p.bias != nullptr) acc += load(p.bias, n);
      y[m * y_stride + n] = bf16 ? FloatToBf16Bits(acc) : FloatToHalfBits(acc);
    }
  }
  if (p.epilogue == GemvEpilogue::kNone) return true;
  // The epilogue is, by definition, the op the unfused path runs next.
  const int64_t cols = GemvOutColumns(p);
  std::vector<uint16_t> act;  // kSiluMul: [M, N/2]
  const uint16_t* out = scratch.data();
  if (p.epilogue == GemvEpilogue::kSiluMul) {
    act.resize(static_cast<size_t>(p.rows * cols));
    SiluMulParams s;
    s.gate_up = scratch.data();
    s.out = act.data();
    s.rows = p.rows;
    s.inter = static_cast<int>(cols);
    s.dtype = p.dtype;
    if (!SiluMulRef(s)) return false;
    out = act.data();
  } else {
    // RopeRef's rotation on the first rope_heads heads (q, then k).
    RopeHeadsRef(scratch.data(), N, p.rows, p.rope_heads, p.head_dim, p.positions, p.inv_freq, p.dtype);
  }
  for (int m = 0; m < p.rows; ++m) {
    for (int64_t c = 0; c < cols; ++c) static_cast<uint16_t*>(p.y)[m * ys + c] = out[m * cols + c];
  }
  return true;
}

}  // namespace kvstream
