// CPU twin of akv_score_update (akv.md §4 step 3), fp64 math (dot products in
// fp32 partial sums, akv_ref::Dot): the scores z are
// recomputed from q and the stored (dequantized) keys, probabilities taken
// against the attention's lse, averaged over all Hq heads. Cost per call:
// O(M' * Hq * (n_hot + n_warm) * D) with M' = 1 (IMPORTANCE) or M (HYBRID).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/akv/akv_manage.h"
#include "kernels/akv/akv_ref_rows.h"
#include "kernels/common/half_bits.h"

namespace kvstream {

bool AkvScoreUpdateRef(const AkvScoreParams& p) {
  if (AkvScoreValidate(p) != nullptr) return false;
  if (p.num_rows == 0 || p.mode == AkvScoring::kFifo) return true;
  const AkvLayout& lay = p.layout;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, p.layer);
  const int D = lay.head_dim, Hq = p.num_heads, G = Hq / lay.num_kv_heads, M = p.num_rows;
  const int n_hot = std::clamp(t.counts[kAkvNHot], 0, lay.hot_capacity);
  const int n_warm = std::clamp(t.counts[kAkvNWarm], 0, lay.warm_capacity);
  const int n = n_hot + n_warm;
  const int64_t qsm = p.q_stride_m ? p.q_stride_m : static_cast<int64_t>(Hq) * D;
  const int64_t qsh = p.q_stride_h ? p.q_stride_h : D;
  if (p.q_keep != nullptr) {  // the last query row and its lse, as the kernel's CTA 0 copies them
    const size_t esz = KvDTypeSize(lay.dtype);
    for (int h = 0; h < Hq; ++h) {
      std::memcpy(static_cast<uint8_t*>(p.q_keep) + size_t(h) * D * esz,
                  static_cast<const uint8_t*>(p.q) + ((M - 1) * qsm + h * qsh) * esz, D * esz);
      p.lse_keep[h] = p.lse[int64_t(M - 1) * Hq + h];
    }
  }
  if (n == 0) return true;
  const bool hybrid = p.mode == AkvScoring::kHybrid;
  const int first_row = hybrid ? 0 : M - 1;

  std::vector<double> a_all(n, 0.0), a_last(n, 0.0);
  std::vector<float> q(D);
  akv_ref::HeadRows rows;
  for (int kvh = 0; kvh < lay.num_kv_heads; ++kvh) {
    akv_ref::GatherHead(lay, t, n_hot, n_warm, kvh, &rows, /*with_v=*/false);
    for (int i = first_row; i < M; ++i) {
      for (int h = kvh * G; h < (kvh + 1) * G; ++h) {
        const double lse = p.lse[static_cast<int64_t>(i) * Hq + h];
        if (!std::isfinite(lse)) continue;  // the row saw no token: it attends nothing
        for (int d = 0; d < D; ++d) q[d] = LoadAsFloat(p.q, i * qsm + h * qsh + d, lay.dtype);
        for (int j = 0; j < n; ++j) {
          if (rows.pos[j] > p.q_pos[i]) continue;
          const double pr = std::exp(akv_ref::Dot(q.data(), rows.k[j], D) * p.scale - lse);
          a_all[j] += pr;
          if (i == M - 1) a_last[j] += pr;
        }
      }
    }
  }
  for (int j = 0; j < n; ++j) {
    a_all[j] /= Hq;
    a_last[j] /= Hq;
  }
  const double lam = p.decay;
  auto prev = [&](int j) -> double { return j < n_hot ? t.hot_score[j] : t.warm_score[j - n_hot]; };
  auto store = [&](int j, double v) {
    if (j < n_hot) {
      t.hot_score[j] = static_cast<float>(v);
    } else {
      t.warm_score[j - n_hot] = static_cast<float>(v);
      t.warm_a[j - n_hot] = static_cast<float>(a_last[j]);
    }
  };
  if (!hybrid) {
    for (int j = 0; j < n; ++j) store(j, lam * prev(j) + a_last[j]);
    return true;
  }
  // HYBRID: normalised attention term plus rank of position among the n rows.
  std::vector<double> u(n);
  double umax = 0.0;
  for (int j = 0; j < n; ++j) {
    u[j] = lam * prev(j) + a_all[j];
    umax = std::max(umax, u[j]);
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return rows.pos[x] < rows.pos[y]; });
  std::vector<double> rank(n);
  for (int r = 0; r < n; ++r) rank[order[r]] = n > 1 ? static_cast<double>(r) / (n - 1) : 1.0;
  const double denom = std::max(umax, 1e-10);
  for (int j = 0; j < n; ++j) store(j, p.attention_weight * u[j] / denom + p.recency_weight * rank[j]);
  return true;
}

}  // namespace kvstream
