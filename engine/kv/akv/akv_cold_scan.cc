#include "engine/kv/akv/akv_cold_scan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "engine/kv/akv/akv_cache.h"
#include "engine/status_macros.h"
#include "kernels/akv/akv_manage.h"

namespace kvstream {

absl::StatusOr<AkvColdPicks> AkvPickColdRows(const AkvColdTier& cold, int layer, int64_t first, int n,
                                             const AkvLayout& warm, int cold_bits, const AkvLastQuery& q,
                                             float threshold, int cap) {
  AkvColdPicks picks;
  if (n <= 0 || cap <= 0) return picks;
  std::vector<int64_t> window(static_cast<size_t>(n));
  std::iota(window.begin(), window.end(), first);
  AkvColdScratch win;
  cold.CopyRows(layer, window, &win);
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
    AkvColdScratch src, dst;
    cold_->CopyRows(l, picks.rows, &src);
    const int k = static_cast<int>(picks.rows.size());
    cold_saturations_ += AkvRequantizeRows(src.View(k), lay, plan_.cold_bits, lay.warm_bits, &dst);
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
