// CPU twins of K2 page_criticality and K3 topk_pack (entmax_topk.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/entmax_kv/entmax_topk.h"

namespace kvstream {

bool EntmaxCriticalityRef(const EntmaxCriticalityParams& p) {
  if (EntmaxCriticalityValidate(p) != nullptr) return false;
  const EntmaxPagedKv& kv = p.kv;
  const int D = kv.head_dim, H = p.query.num_heads, hs = p.select_heads, MB = kv.max_blocks_per_seq;
  const int per_list = H / hs, group = H / kv.num_kv_heads;
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  for (int b = 0; b < kv.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
    for (int pg = 0; pg < s.hist; ++pg) {
      if (!EntmaxPageBlocksValid(kv, b, pg, 1)) return false;
    }
  }
  for (int b = 0; b < kv.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
    for (int l = 0; l < hs; ++l) {
      for (int pg = 0; pg < s.hist; ++pg) {
        const int64_t slot = EntmaxStatsSlot(kv, b, pg);
        float best = 0.0f;
        for (int h = l * per_list; h < (l + 1) * per_list; ++h) {
          const size_t st = static_cast<size_t>((slot * kv.num_kv_heads + h / group) * D);
          float u = 0.0f;
          for (int d = 0; d < D; ++d) {
            const float q = LoadAsFloat(p.query.q, static_cast<size_t>(b * qsb + h * qsh + d), kv.dtype);
            const void* end = q >= 0.0f ? p.stats.kmax : p.stats.kmin;
            u += q * LoadAsFloat(end, st + d, kv.dtype);
          }
          best = h == l * per_list ? u : std::max(best, u);
        }
        p.u[(static_cast<int64_t>(b) * hs + l) * MB + pg] = best;
      }
    }
  }
  return true;
}

int EntmaxTopkChunkPages(int max_blocks_per_seq, int budget_pages) {
  // One CTA per row is as fast or faster below 16K pages (H100, session 7,
  // bench/results/gpu/entmax_kv_decode_s7_h100.json: 8K pages two-stage 17.4
  // us vs one CTA 16.4 us; 32K pages 21.0 vs 24.3 us).
  if (max_blocks_per_seq < 16384) return 0;
  // Stage 1 sweeps W keys per CTA, stage 2 up to C*k = (MB/W)*k: balanced at
  // W ~ sqrt(MB*k) (128K tokens, k = 128: W = 1024, C = 8; 512K: 2048, C = 16).
  const double want = std::sqrt(static_cast<double>(max_blocks_per_seq) *
                                std::min(std::max(budget_pages, 1), max_blocks_per_seq));
  int w = 256;
  while (w < want && w < 4096) w *= 2;
  return w < max_blocks_per_seq ? w : 0;
}

bool EntmaxTopkPackRef(const EntmaxTopkPackParams& p) {
  if (EntmaxTopkPackValidate(p) != nullptr) return false;
  const int hs = p.sel.select_heads, MB = p.max_blocks_per_seq, P = p.page_size;
  for (int b = 0; b < p.batch; ++b) {
    const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], P, MB);
    const bool dense = s.tokens < p.min_context || p.budget_pages >= s.hist;
    const int n = dense ? s.hist : p.budget_pages;
    const int sinks = std::min(p.sink_pages, n);
    for (int l = 0; l < hs; ++l) {
      const int64_t row = static_cast<int64_t>(b) * hs + l;
      const float* u = p.u + row * MB;
      std::vector<int> keep;
      for (int pg = 0; pg < sinks; ++pg) keep.push_back(pg);
      if (!dense) {
        std::vector<std::pair<uint64_t, int>> cand;
        for (int pg = sinks; pg < s.hist; ++pg) cand.push_back({EntmaxPageRankKey(u[pg], pg), pg});
        std::stable_sort(cand.begin(), cand.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
        for (int i = 0; i < n - sinks; ++i) keep.push_back(cand[i].second);
        std::sort(keep.begin(), keep.end());
      } else {
        for (int pg = sinks; pg < s.hist; ++pg) keep.push_back(pg);
      }
      if (s.pages > 0) keep.push_back(s.pages - 1);  // the tail, always last
      int32_t* out = p.sel.pages + row * MB;
      for (size_t i = 0; i < keep.size(); ++i) out[i] = keep[i];
      p.sel.page_count[row] = static_cast<int32_t>(keep.size());
      p.sel.sel_len[row] = s.pages > 0 ? n * P + s.tail_len : 0;
    }
  }
  return true;
}

}  // namespace kvstream
