// CPU twin of row_stats and its validator.
#include <cmath>
#include <limits>

#include "kernels/common/half_bits.h"
#include "kernels/sampling/row_stats.h"

namespace kvstream {

const char* RowStatsValidate(const RowStatsParams& p) {
  if (p.rows < 0) return "rows must be >= 0";
  if (p.vocab < 1) return "vocab must be >= 1";
  if (p.ld != 0 && p.ld < p.vocab) return "ld must be 0 or >= vocab";
  if (KvDTypeSize(p.dtype) == 0) return "dtype must be fp32, fp16 or bf16";
  if (p.rows > 0 && (p.logits == nullptr || p.out == nullptr)) return "logits and out must be non-null";
  return nullptr;
}

bool RowStatsRef(const RowStatsParams& p) {
  if (RowStatsValidate(p) != nullptr) return false;
  const int64_t ld = p.ld ? p.ld : p.vocab;
  for (int r = 0; r < p.rows; ++r) {
    float m = -std::numeric_limits<float>::infinity();
    int32_t arg = 0;
    for (int v = 0; v < p.vocab; ++v) {
      const float x = LoadAsFloat(p.logits, r * ld + v, p.dtype);
      if (x > m) m = x, arg = v;
    }
    double s = 0.0;
    for (int v = 0; v < p.vocab; ++v) s += std::exp(double(LoadAsFloat(p.logits, r * ld + v, p.dtype)) - m);
    RowStats& o = p.out[r];
    o.max_logit = m;
    o.argmax = arg;
    o.lse = std::isinf(m) && m < 0 ? m : static_cast<float>(m + std::log(s));
    o.pad = 0;
    if (p.next_token != nullptr) p.next_token[r] = arg;
  }
  return true;
}

}  // namespace kvstream
