// CPU twins of K1 sq_quantize_pack and K3 sq_dequant (spectral_quant.md §4.3,
// §7), plus the host validators the launchers share. fp32 u = z / s and the
// midpoint count, exactly as the kernel, so codes are bit-identical.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/common/half_bits.h"
#include "kernels/spectral_quant/sq_quantize.h"

namespace kvstream {
namespace {

const char* ValidatePlan(const SqPlanView& plan) {
  if (!plan.width || !plan.scale || !plan.bit_offset) return "plan.width, plan.scale and plan.bit_offset must be non-null";
  if (plan.words < 1 || plan.words > kSqMaxRecordWords + 1) return "plan.words must be in [1, 33]";
  return nullptr;
}

// #{m in mids[0, n) : m < u}: the nearest centroid with ties to the lower index.
inline uint32_t CodeOf(const float* mids, int n, float u) {
  return static_cast<uint32_t>(std::lower_bound(mids, mids + n, u) - mids);
}

}  // namespace

const char* SqQuantizePackValidate(const SqQuantizePackParams& p) {
  if (!SqSupportsHeadDim(p.head_dim)) return "head_dim must be 64 or 128";
  if (p.num_tokens < 0) return "num_tokens must be >= 0";
  if (p.num_kv_heads < 1) return "num_kv_heads must be >= 1";
  if (p.z_stride_t < 0) return "z_stride_t must be >= 0 (0 = Hkv * D)";
  if (const char* e = ValidatePlan(p.plan)) return e;
  const bool any_qjl = p.s_prime || p.r_norm || p.signs;
  if (any_qjl && !(p.s_prime && p.r_norm && p.signs && p.plan.d_eff))
    return "QJL needs s_prime, r_norm, signs and plan.d_eff together";
  if (any_qjl && (p.sign_words < 1 || p.sign_words > p.head_dim / 32)) return "sign_words must be in [1, D/32]";
  if (p.num_tokens == 0) return nullptr;
  if (!p.z || !p.tables || !p.records) return "z, tables and records must be non-null";
  return nullptr;
}

const char* SqDequantValidate(const SqDequantParams& p) {
  if (!SqSupportsHeadDim(p.head_dim)) return "head_dim must be 64 or 128";
  if (p.num_tokens < 0) return "num_tokens must be >= 0";
  if (p.num_kv_heads < 1) return "num_kv_heads must be >= 1";
  if (const char* e = ValidatePlan(p.plan)) return e;
  if (p.num_tokens == 0) return nullptr;
  if (!p.records || !p.tables || !p.zhat) return "records, tables and zhat must be non-null";
  return nullptr;
}

bool SqQuantizePackRef(const SqQuantizePackParams& p) {
  if (SqQuantizePackValidate(p) != nullptr) return false;
  const int D = p.head_dim, H = p.num_kv_heads, W = p.plan.words;
  const int64_t zs = p.z_stride_t ? p.z_stride_t : static_cast<int64_t>(H) * D;
  const bool qjl = p.s_prime != nullptr;
  const int64_t first = p.first_token ? *p.first_token : 0;
  float zhat[kSqMaxHeadDim], err[kSqMaxHeadDim];
  for (int t = 0; t < p.num_tokens; ++t) {
    for (int h = 0; h < H; ++h) {
      const float* z = p.z + t * zs + static_cast<int64_t>(h) * D;
      const int64_t orow = (first + t) * H + h;  // output row
      uint32_t* rec = p.records + orow * W;
      std::memset(rec, 0, sizeof(uint32_t) * W);
      for (int i = 0; i < D; ++i) {
        const int w = p.plan.width[h * D + i], off = p.plan.bit_offset[h * D + i];
        const float s = p.plan.scale[h * D + i];
        const float u = z[i] / s;  // IEEE division, as on the device
        const uint32_t code = CodeOf(p.tables + kSqCentroidFloats + SqMidpointOffset(w), (1 << w) - 1, u);
        const uint64_t v = static_cast<uint64_t>(code) << (off & 31);
        rec[off >> 5] |= static_cast<uint32_t>(v);
        if ((off & 31) + w > 32) rec[(off >> 5) + 1] |= static_cast<uint32_t>(v >> 32);
        zhat[i] = s * p.tables[SqCentroidOffset(w) + code];
        err[i] = z[i] - zhat[i];
      }
      if (!qjl) continue;
      // §4.3 step 2: r_norm = ||z - z^||, sign_m = sign((S' (z - z^))_m), 0 -> +1.
      double r2 = 0.0;
      for (int i = 0; i < D; ++i) r2 += static_cast<double>(err[i]) * err[i];
      p.r_norm[orow] = FloatToHalfBits(static_cast<float>(std::sqrt(r2)));
      uint32_t* sg = p.signs + orow * p.sign_words;
      std::memset(sg, 0, sizeof(uint32_t) * p.sign_words);
      const int de = std::min(p.plan.d_eff[h], 32 * p.sign_words);
      for (int m = 0; m < de; ++m) {
        const float* row = p.s_prime + (static_cast<int64_t>(h) * D + m) * D;
        double dot = 0.0;
        for (int i = 0; i < D; ++i) dot += static_cast<double>(row[i]) * err[i];
        if (dot >= 0.0) sg[m >> 5] |= 1u << (m & 31);
      }
    }
  }
  return true;
}

bool SqDequantRef(const SqDequantParams& p) {
  if (SqDequantValidate(p) != nullptr) return false;
  const int D = p.head_dim, H = p.num_kv_heads, W = p.plan.words;
  for (int t = 0; t < p.num_tokens; ++t) {
    for (int h = 0; h < H; ++h) {
      const uint32_t* rec = p.records + (static_cast<int64_t>(t) * H + h) * W;
      float* out = p.zhat + (static_cast<int64_t>(t) * H + h) * D;
      for (int i = 0; i < D; ++i) {
        const int w = p.plan.width[h * D + i];
        const uint32_t code = SqReadField(rec, p.plan.bit_offset[h * D + i], w);
        out[i] = p.plan.scale[h * D + i] * p.tables[SqCentroidOffset(w) + code];
      }
    }
  }
  return true;
}

}  // namespace kvstream
