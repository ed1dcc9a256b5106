#include "engine/kv/akv/akv_cold_scan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/kv/akv/akv_cache.h"
#include "engine/status_macros.h"
#include "kernels/akv/akv_manage.h"
#include "kernels/akv/akv_quant.h"

namespace kvstream {

absl::StatusOr<AkvColdPicks> AkvPickColdRows(const AkvColdTier& cold, int layer, int64_t first, int n,
                                             const AkvLayout& warm, int cold_bits, const AkvLastQuery& q,
                                             float threshold, int cap) {
  AkvColdPicks picks;
  if (n <= 0 || cap <= 0) return picks;
  AkvColdScratch win;
  cold.CopyRows(layer, first, n, &win);
  // The window as a warm tier of cold_bits codes beside an empty hot tier
  // (the score twin wants hot buffers; it reads none with n_hot = 0).
  AkvLayout lay = warm;
  lay.warm_bits = cold_bits;
  lay.hot_capacity = 1;
  lay.warm_capacity = n;
  lay.dtype = KvDType::kFp32;
  std::vector<float> hot(static_cast<size_t>(lay.num_kv_heads) * lay.head_dim, 0.0f), w(n, 0.0f), a(n, 0.0f);
  int32_t hot_pos = 0;
  float hot_score = 0.0f;
  std::vector<int32_t> counts(kAkvCountSlots, 0);
  counts[kAkvNWarm] = n;
  AkvScoreParams sp;
  sp.layout = lay;
  sp.tiers.hot_k = hot.data(), sp.tiers.hot_v = hot.data(), sp.tiers.hot_pos = &hot_pos;
  sp.tiers.hot_score = &hot_score;
  sp.tiers.warm_k = win.k.data(), sp.tiers.warm_v = win.v.data();
  sp.tiers.warm_k_scale = win.k_scale.data(), sp.tiers.warm_k_zero = win.k_zero.data();
  sp.tiers.warm_v_scale = win.v_scale.data(), sp.tiers.warm_v_zero = win.v_zero.data();
  sp.tiers.warm_pos = win.pos.data(), sp.tiers.warm_score = w.data(), sp.tiers.warm_a = a.data();
  sp.tiers.counts = counts.data();
  sp.q = q.q, sp.q_pos = &q.pos, sp.lse = q.lse;
  sp.num_rows = 1, sp.num_heads = q.num_heads;
  sp.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(lay.head_dim)));
  sp.mode = AkvScoring::kImportance, sp.decay = 0.0f;
  if (!AkvScoreUpdateRef(sp)) {
    const char* why = AkvScoreValidate(sp);
    return absl::InternalError(absl::StrCat("akv cold scan: score update refused: ", why ? why : "invalid params"));
  }
  std::vector<int> cand;
  for (int j = 0; j < n; ++j) {
    if (a[j] > threshold) cand.push_back(j);
  }
  std::sort(cand.begin(), cand.end(), [&](int x, int y) {  // largest a first; ties: larger pos
    return a[x] != a[y] ? a[x] > a[y] : win.pos[x] > win.pos[y];
  });
  if (static_cast<int>(cand.size()) > cap) cand.resize(static_cast<size_t>(cap));
  std::sort(cand.begin(), cand.end());
  for (int j : cand) {
    picks.rows.push_back(first + j);
    picks.a.push_back(a[j]);
  }
  return picks;
}

int AkvRequantizeColdRows(const AkvColdRows& in, const AkvLayout& warm, int cold_bits, AkvColdScratch* out) {
  const int Hkv = warm.num_kv_heads, D = warm.head_dim, g = warm.group_size, Gn = warm.Groups();
  const int cb = warm.CodeBytes(), cc = D * cold_bits / 8, n = in.rows;
  out->k.resize(size_t(n) * Hkv * cb);
  out->v.resize(size_t(n) * Hkv * cb);
  for (auto* x : {&out->k_scale, &out->k_zero, &out->v_scale, &out->v_zero}) x->resize(size_t(n) * Hkv * Gn);
  out->pos.assign(in.pos, in.pos + n);
  std::vector<float> row(static_cast<size_t>(D));
  int sat = 0;
  for (int64_t r = 0; r < int64_t(n) * Hkv; ++r) {
    AkvDequantRowHost(in.k + r * cc, in.k_scale + r * Gn, in.k_zero + r * Gn, D, cold_bits, g, row.data());
    sat += AkvQuantizeRowHost(row.data(), D, warm.warm_bits, g, out->k.data() + r * cb, out->k_scale.data() + r * Gn,
                              out->k_zero.data() + r * Gn);
    AkvDequantRowHost(in.v + r * cc, in.v_scale + r * Gn, in.v_zero + r * Gn, D, cold_bits, g, row.data());
    sat += AkvQuantizeRowHost(row.data(), D, warm.warm_bits, g, out->v.data() + r * cb, out->v_scale.data() + r * Gn,
                              out->v_zero.data() + r * Gn);
  }
  return sat;
}

// CPU server: every managed layer scans its window and files the picks into
// its warm tail (the tiers and counters are host memory here).
absl::Status AkvSequenceCache::ColdScanCpu() {
  const AkvLayout& lay = managed_.layout;
  const AkvTiers all = managed_.Tiers();
  const int H = static_cast<int>(geometry_.n_heads), D = lay.head_dim, Hkv = lay.num_kv_heads;
  const int Gn = lay.Groups(), cb = lay.CodeBytes();
  const int cap = config_.PromoteCap(config_.EffectiveHotBudget(seen_));
  ++cold_scans_;
  for (int l = 0; l < plan_.managed_layers; ++l) {
    const int64_t rows = cold_->Rows(l);
    if (rows == 0 || !scan_has_query_[l]) continue;
    const AkvTiers t = AkvTiersAtLayer(all, lay, l);
    const int n_warm = t.counts[kAkvNWarm];
    // Up to the count a step may leave warm at (warm_budget + batch - 1), so
    // the tier sizes of akv.md §3 (warm capacity, the warm->cold stage) hold.
    const int room = std::min({cap, config_.warm_budget + config_.eviction_batch_size - 1 - n_warm,
                               lay.warm_capacity - n_warm});
    if (room <= 0) continue;
    int64_t first = scan_cursor_[l] < rows ? scan_cursor_[l] : 0;
    const int n = static_cast<int>(std::min<int64_t>(kAkvColdScanWindowRows, rows - first));
    scan_cursor_[l] = first + n;
    AkvLastQuery q{scan_q_.data() + int64_t(l) * H * D, scan_lse_.data() + int64_t(l) * H,
                   static_cast<int32_t>(seen_ - 1), H};
    KV_ASSIGN_OR_RETURN(AkvColdPicks picks,
                        AkvPickColdRows(*cold_, l, first, n, lay, plan_.cold_bits, q, config_.promote_threshold, room));
    if (picks.rows.empty()) continue;
    AkvColdScratch src, dst, one;
    for (const int64_t r : picks.rows) {  // gather the picks (ascending rows)
      cold_->CopyRows(l, r, 1, &one);
      src.k.insert(src.k.end(), one.k.begin(), one.k.end());
      src.v.insert(src.v.end(), one.v.begin(), one.v.end());
      src.k_scale.insert(src.k_scale.end(), one.k_scale.begin(), one.k_scale.end());
      src.k_zero.insert(src.k_zero.end(), one.k_zero.begin(), one.k_zero.end());
      src.v_scale.insert(src.v_scale.end(), one.v_scale.begin(), one.v_scale.end());
      src.v_zero.insert(src.v_zero.end(), one.v_zero.begin(), one.v_zero.end());
      src.pos.push_back(one.pos[0]);
    }
    const int k = static_cast<int>(picks.rows.size());
    cold_saturations_ += AkvRequantizeColdRows(src.View(k), lay, plan_.cold_bits, &dst);
    const int64_t at = n_warm;
    std::copy(dst.k.begin(), dst.k.end(), t.warm_k + at * Hkv * cb);
    std::copy(dst.v.begin(), dst.v.end(), t.warm_v + at * Hkv * cb);
    std::copy(dst.k_scale.begin(), dst.k_scale.end(), t.warm_k_scale + at * Hkv * Gn);
    std::copy(dst.k_zero.begin(), dst.k_zero.end(), t.warm_k_zero + at * Hkv * Gn);
    std::copy(dst.v_scale.begin(), dst.v_scale.end(), t.warm_v_scale + at * Hkv * Gn);
    std::copy(dst.v_zero.begin(), dst.v_zero.end(), t.warm_v_zero + at * Hkv * Gn);
    for (int i = 0; i < k; ++i) {
      t.warm_pos[at + i] = dst.pos[i];
      t.warm_score[at + i] = picks.a[i];  // w_j = a_j: scored once, as a fresh row is
      t.warm_a[at + i] = picks.a[i];
    }
    t.counts[kAkvNWarm] = n_warm + k;
    cold_->Remove(l, picks.rows);
    // Rows before the cursor moved down by the picks inside the window.
    scan_cursor_[l] -= k;
    cold_promoted_[l] += k;
  }
  return absl::OkStatus();
}

}  // namespace kvstream
