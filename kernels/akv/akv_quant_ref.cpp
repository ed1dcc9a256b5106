// CPU twins of akv_quantize_pack / akv_dequant: the loops of akv_quant.h's
// host math, bit-exact with the CUDA kernels (same fp32 operations in the
// same order; see the rule at the top of akv_quant.h).
#include <vector>

#include "kernels/akv/akv_quant.h"

namespace kvstream {

int AkvQuantizeRowHost(const float* x, int head_dim, int bits, int group_size, uint8_t* codes, uint16_t* scale,
                       uint16_t* zero) {
  uint8_t unpacked[128];
  int saturated = 0;
  for (int grp = 0; grp < head_dim / group_size; ++grp) {
    saturated += AkvQuantizeGroupHost(x + grp * group_size, group_size, bits, unpacked, &scale[grp], &zero[grp]);
    AkvPackHost(unpacked, group_size, bits, codes + grp * group_size * bits / 8);
  }
  return saturated;
}

bool AkvQuantizeRef(const AkvQuantizeParams& p) {
  if (AkvQuantizeValidate(p) != nullptr) return false;
  const int D = p.head_dim, Hkv = p.num_kv_heads, Gn = D / p.group_size, cb = D * p.bits / 8;
  const int64_t stride = p.x_row_stride ? p.x_row_stride : static_cast<int64_t>(Hkv) * D;
  std::vector<float> row(D);
  int saturated = 0;
  for (int r = 0; r < p.rows; ++r) {
    for (int h = 0; h < Hkv; ++h) {
      const int64_t xoff = r * stride + static_cast<int64_t>(h) * D;
      for (int d = 0; d < D; ++d) row[d] = LoadAsFloat(p.x, xoff + d, p.dtype);
      const int64_t slice = static_cast<int64_t>(r) * Hkv + h;
      saturated += AkvQuantizeRowHost(row.data(), D, p.bits, p.group_size, p.codes + slice * cb,
                                      p.scale + slice * Gn, p.zero + slice * Gn);
    }
  }
  if (p.saturations) *p.saturations += saturated;
  return true;
}

bool AkvDequantRef(const AkvDequantParams& p) {
  if (AkvDequantValidate(p) != nullptr) return false;
  const int D = p.head_dim, Hkv = p.num_kv_heads, Gn = D / p.group_size, cb = D * p.bits / 8;
  std::vector<float> row(D);
  for (int64_t slice = 0; slice < static_cast<int64_t>(p.rows) * Hkv; ++slice) {
    AkvDequantRowHost(p.codes + slice * cb, p.scale + slice * Gn, p.zero + slice * Gn, D, p.bits, p.group_size,
                      row.data());
    for (int d = 0; d < D; ++d) StoreFromFloat(p.x, slice * D + d, row[d], p.dtype);
  }
  return true;
}

}  // namespace kvstream
