// CPU twins of kernels/model/fused_ops.cu and the shared validators.
#include <cmath>
#include <cstring>

#include "kernels/common/half_bits.h"
#include "kernels/model/fused_ops.h"

namespace kvstream {
namespace {

// Element access in the storage dtype (fp32 / bf16 / fp16 bits).
float Load(const void* base, int64_t i, KvDType t) {
  switch (t) {
    case KvDType::kFp32: return static_cast<const float*>(base)[i];
    case KvDType::kBf16: return Bf16BitsToFloat(static_cast<const uint16_t*>(base)[i]);
    default: return HalfBitsToFloat(static_cast<const uint16_t*>(base)[i]);
  }
}

void Store(void* base, int64_t i, float v, KvDType t) {
  switch (t) {
    case KvDType::kFp32: static_cast<float*>(base)[i] = v; break;
    case KvDType::kBf16: static_cast<uint16_t*>(base)[i] = FloatToBf16Bits(v); break;
    default: static_cast<uint16_t*>(base)[i] = FloatToHalfBits(v); break;
  }
}

// Rounds v to the storage dtype and back.
float Round(float v, KvDType t) {
  if (t == KvDType::kFp32) return v;
  if (t == KvDType::kBf16) return Bf16BitsToFloat(FloatToBf16Bits(v));
  return HalfBitsToFloat(FloatToHalfBits(v));
}

bool DtypeOk(KvDType t) { return KvDTypeSize(t) != 0; }

}  // namespace

const char* RmsNormValidate(const RmsNormParams& p) {
  if (p.x == nullptr || p.weight == nullptr || p.out == nullptr) return "x, weight and out are required";
  if (p.rows < 0) return "rows must be >= 0";
  if (p.hidden <= 0 || p.hidden % 8 != 0) return "hidden must be a positive multiple of 8";
  if (p.x_stride != 0 && p.x_stride < p.hidden) return "x_stride must be 0 or >= hidden";
  if (!(p.eps > 0.f)) return "eps must be > 0";
  if (!DtypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  return nullptr;
}

const char* SiluMulValidate(const SiluMulParams& p) {
  if (p.gate_up == nullptr || p.out == nullptr) return "gate_up and out are required";
  if (p.rows < 0) return "rows must be >= 0";
  if (p.inter <= 0 || p.inter % 8 != 0) return "inter must be a positive multiple of 8";
  if (!DtypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  return nullptr;
}

const char* RopeValidate(const RopeParams& p) {
  if (p.qkv == nullptr || p.positions == nullptr || p.inv_freq == nullptr) {
    return "qkv, positions and inv_freq are required";
  }
  if (p.rows < 0) return "rows must be >= 0";
  if (p.num_heads <= 0 || p.num_kv_heads <= 0) return "num_heads and num_kv_heads must be > 0";
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim > 256) return "head_dim must be even, in [2, 256]";
  const int64_t width = static_cast<int64_t>(p.num_heads + 2 * p.num_kv_heads) * p.head_dim;
  if (p.qkv_stride != 0 && p.qkv_stride < width) return "qkv_stride must be 0 or >= (H + 2 Hkv) D";
  if (!DtypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  return nullptr;
}

bool RmsNormRef(const RmsNormParams& p) {
  if (RmsNormValidate(p) != nullptr) return false;
  const int64_t E = p.hidden, xs = p.x_stride ? p.x_stride : E;
  for (int64_t r = 0; r < p.rows; ++r) {
    const void* src = p.x;
    int64_t src_off = r * xs;
    if (p.residual != nullptr) {
      for (int64_t e = 0; e < E; ++e) {
        Store(p.residual, r * E + e, Load(p.residual, r * E + e, p.dtype) + Load(p.x, r * xs + e, p.dtype), p.dtype);
      }
      src = p.residual;
      src_off = r * E;
    }
    float ss = 0.f;
    for (int64_t e = 0; e < E; ++e) {
      const float v = Load(src, src_off + e, p.dtype);
      ss += v * v;
    }
    const float inv = 1.f / std::sqrt(ss / static_cast<float>(E) + p.eps);
    for (int64_t e = 0; e < E; ++e) {
      const float y = Round(Load(src, src_off + e, p.dtype) * inv, p.dtype);
      Store(p.out, r * E + e, Load(p.weight, e, p.dtype) * y, p.dtype);
    }
  }
  return true;
}

bool SiluMulRef(const SiluMulParams& p) {
  if (SiluMulValidate(p) != nullptr) return false;
  const int64_t I = p.inter;
  for (int64_t r = 0; r < p.rows; ++r) {
    for (int64_t i = 0; i < I; ++i) {
      const float g = Load(p.gate_up, r * 2 * I + i, p.dtype);
      const float a = Round(g / (1.f + std::exp(-g)), p.dtype);
      Store(p.out, r * I + i, a * Load(p.gate_up, r * 2 * I + I + i, p.dtype), p.dtype);
    }
  }
  return true;
}

void RopeHeadsRef(void* x, int64_t stride, int rows, int heads, int head_dim, const int64_t* positions,
                  const float* inv_freq, KvDType dtype) {
  const int64_t D = head_dim, half = D / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float pos = static_cast<float>(positions[r]);
    for (int64_t i = 0; i < half; ++i) {
      const float f = pos * inv_freq[i];
      const float c = Round(std::cos(f), dtype), s = Round(std::sin(f), dtype);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t o = r * stride + h * D;
        const float x1 = Load(x, o + i, dtype), x2 = Load(x, o + half + i, dtype);
        Store(x, o + i, Round(x1 * c, dtype) - Round(x2 * s, dtype), dtype);
        Store(x, o + half + i, Round(x2 * c, dtype) + Round(x1 * s, dtype), dtype);
      }
    }
  }
}

bool RopeRef(const RopeParams& p) {
  if (RopeValidate(p) != nullptr) return false;
  const int64_t stride = p.qkv_stride ? p.qkv_stride : static_cast<int64_t>(p.num_heads + 2 * p.num_kv_heads) * p.head_dim;
  RopeHeadsRef(p.qkv, stride, p.rows, p.num_heads + p.num_kv_heads, p.head_dim, p.positions, p.inv_freq, p.dtype);
  return true;
}

}  // namespace kvstream
