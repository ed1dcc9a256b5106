// CPU twin of K1 page_stats (entmax_page_stats.h): plain loops, fp32, the
// same token order and two-pass std as the kernel.
#include <algorithm>
#include <cmath>

#include "kernels/common/half_bits.h"
#include "kernels/entmax_kv/entmax_page_stats.h"

namespace kvstream {

bool EntmaxPageStatsRef(const EntmaxPageStatsParams& p) {
  if (EntmaxPageStatsValidate(p) != nullptr) return false;
  const EntmaxPagedKv& kv = p.kv;
  const int P = kv.page_size, D = kv.head_dim, hkv = kv.num_kv_heads;
  // Check every page id first so an invalid table writes nothing.
  for (int b = 0; b < kv.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], P, kv.max_blocks_per_seq);
    for (int pg = std::max(0, s.pages - p.recent_pages); pg < s.pages; ++pg) {
      if (!EntmaxPageBlocksValid(kv, b, pg, std::min(P, s.tokens - pg * P))) return false;
    }
  }
  for (int b = 0; b < kv.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], P, kv.max_blocks_per_seq);
    for (int pg = std::max(0, s.pages - p.recent_pages); pg < s.pages; ++pg) {
      const int64_t slot = EntmaxStatsSlot(kv, b, pg);
      const int n = std::min(P, s.tokens - pg * P);
      for (int g = 0; g < hkv; ++g) {
        const size_t sbase = static_cast<size_t>(slot * hkv + g) * D;
        for (int d = 0; d < D; ++d) {
          auto key = [&](int j) {
            const int64_t row = EntmaxTokenOffset(kv, b, g, pg * P + j);
            return LoadAsFloat(kv.k_pool, static_cast<size_t>(row + d), kv.dtype);
          };
          if (p.kind == EntmaxStatKind::kMinMax) {
            float lo = key(0), hi = lo;
            for (int j = 1; j < n; ++j) {
              lo = std::min(lo, key(j));
              hi = std::max(hi, key(j));
            }
            // Values came from dtype, so storing them back is exact.
            StoreFromFloat(p.stats.kmin, sbase + d, lo, kv.dtype);
            StoreFromFloat(p.stats.kmax, sbase + d, hi, kv.dtype);
          } else {
            float sum = 0.0f;
            for (int j = 0; j < n; ++j) sum += key(j);
            const float mean = sum / static_cast<float>(n);
            float ss = 0.0f;
            for (int j = 0; j < n; ++j) {
              const float c = key(j) - mean;
              ss += c * c;
            }
            p.stats.kmean[sbase + d] = mean;
            p.stats.kstd[sbase + d] = std::max(std::sqrt(ss / static_cast<float>(n)), kEntmaxStdFloor);
          }
        }
      }
    }
  }
  return true;
}

}  // namespace kvstream
