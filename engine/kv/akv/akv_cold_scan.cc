#include "engine/kv/akv/akv_cold_scan.h"

#include <algorithm>
#include <cmath>

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
  AkvColdScratch win;  // keys only: the score reads no value
  const int64_t hkv = warm.num_kv_heads;
  win.k.resize(n * hkv * (warm.head_dim * cold_bits / 8));
  win.k_scale.resize(n * hkv * warm.Groups()), win.k_zero.resize(n * hkv * warm.Groups()), win.pos.resize(n);
  cold.CopyKeys(layer, first, n, win.k.data(), win.k_scale.data(), win.k_zero.data(), win.pos.data());
  std::vector<float> hot(static_cast<size_t>(warm.num_kv_heads) * warm.head_dim, 0.0f), w(n, 0.0f), a(n, 0.0f);
  int32_t hot_pos = 0;
  float hot_score = 0.0f;
  std::vector<int32_t> counts(kAkvCountSlots, 0);
  counts[kAkvNWarm] = n;
  AkvTiers window;
  window.hot_k = hot.data(), window.hot_pos = &hot_pos, window.hot_score = &hot_score;
  window.warm_k = win.k.data(), window.warm_k_scale = win.k_scale.data(), window.warm_k_zero = win.k_zero.data();
  window.warm_pos = win.pos.data(), window.warm_score = w.data(), window.warm_a = a.data();
  window.counts = counts.data();
  AkvScoreParams sp = AkvColdWindowScoreParams(warm, cold_bits, n, q.dtype, q.num_heads, window);
  sp.q = q.q, sp.q_pos = &q.pos, sp.lse = q.lse;
  if (!AkvScoreUpdateRef(sp)) {
    const char* why = AkvScoreValidate(sp);
    return absl::InternalError(absl::StrCat("akv cold scan: score update refused: ", why ? why : "invalid params"));
  }
  for (int j : AkvBestShares(a.data(), win.pos.data(), n, threshold, cap)) {
    picks.rows.push_back(first + j);
    picks.a.push_back(a[j]);
  }
  return picks;
}

AkvScoreParams AkvColdWindowScoreParams(const AkvLayout& warm, int cold_bits, int rows, KvDType dtype,
                                        int num_heads, AkvTiers window) {
  AkvScoreParams sp;
  sp.layout = warm;
  sp.layout.warm_bits = cold_bits;
  sp.layout.hot_capacity = 1;
  sp.layout.warm_capacity = rows;
  sp.layout.dtype = dtype;
  window.hot_v = window.hot_k;
  window.warm_v = window.warm_k;
  window.warm_v_scale = window.warm_k_scale;
  window.warm_v_zero = window.warm_k_zero;
  sp.tiers = window;
  sp.num_rows = 1;
  sp.num_heads = num_heads;
  sp.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(warm.head_dim)));
  sp.mode = AkvScoring::kImportance;
  sp.decay = 0.0f;
  return sp;
}

std::vector<int> AkvBestShares(const float* a, const int32_t* pos, int n, float threshold, int cap) {
  std::vector<int> cand;
  for (int j = 0; j < n; ++j) {
    if (a[j] > threshold) cand.push_back(j);
  }
  std::sort(cand.begin(), cand.end(), [&](int x, int y) {  // largest a first; ties: larger pos
    return a[x] != a[y] ? a[x] > a[y] : pos[x] > pos[y];
  });
  if (static_cast<int>(cand.size()) > cap) cand.resize(static_cast<size_t>(std::max(cap, 0)));
  return cand;
}

int AkvStageColdPicks(const AkvColdTier& cold, int layer, const AkvColdPicks& picks, const AkvLayout& warm,
                      int cold_bits, const AkvColdStage& stage, int slot) {
  const int k = static_cast<int>(picks.rows.size());
  if (k == 0) return 0;
  AkvColdScratch src, dst;
  cold.CopyRows(layer, picks.rows, &src);
  const int saturated = AkvRequantizeRows(src.View(k), warm, cold_bits, warm.warm_bits, &dst);
  const int64_t cr = int64_t(warm.num_kv_heads) * warm.CodeBytes(), gr = int64_t(warm.num_kv_heads) * warm.Groups();
  const int64_t r0 = int64_t(slot) * stage.Rows(warm);
  std::copy(dst.k.begin(), dst.k.end(), stage.k + r0 * cr);
  std::copy(dst.v.begin(), dst.v.end(), stage.v + r0 * cr);
  std::copy(dst.k_scale.begin(), dst.k_scale.end(), stage.k_scale + r0 * gr);
  std::copy(dst.k_zero.begin(), dst.k_zero.end(), stage.k_zero + r0 * gr);
  std::copy(dst.v_scale.begin(), dst.v_scale.end(), stage.v_scale + r0 * gr);
  std::copy(dst.v_zero.begin(), dst.v_zero.end(), stage.v_zero + r0 * gr);
  std::copy(dst.pos.begin(), dst.pos.end(), stage.pos + r0);
  std::copy(picks.a.begin(), picks.a.end(), stage.score + r0);
  return saturated;
}

void AkvDropTakenColdRows(AkvColdTier* cold, int layer, const AkvColdPicks& picks, int64_t taken) {
  if (taken <= 0) return;
  std::vector<int64_t> rows(picks.rows.begin(), picks.rows.begin() + std::min<int64_t>(taken, picks.rows.size()));
  std::sort(rows.begin(), rows.end());
  // Tail rows fill the holes: those moved before the cursor wait for the next round.
  cold->Remove(layer, rows);
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
    const int room = std::min({cap, config_.WarmAfterStep() - n_warm,
                               lay.warm_capacity - n_warm});
    if (room <= 0) continue;
    int64_t first = scan_cursor_[l] < rows ? scan_cursor_[l] : 0;
    const int n = static_cast<int>(std::min<int64_t>(plan_.scan_rows, rows - first));
    scan_cursor_[l] = first + n;
    const size_t esz = KvDTypeSize(lay.dtype);
    AkvLastQuery q{scan_q_.data() + int64_t(l) * H * D * esz, scan_lse_.data() + int64_t(l) * H,
                   static_cast<int32_t>(seen_ - 1), H, lay.dtype};
    KV_ASSIGN_OR_RETURN(AkvColdPicks picks,
                        AkvPickColdRows(*cold_, l, first, n, lay, plan_.cold_bits, q, config_.promote_threshold, room));
    const int32_t k = static_cast<int32_t>(picks.rows.size());
    if (k == 0) continue;
    // The picks re-quantized to warm_bits, through the twin of the CUDA path's append.
    AkvColdScratch st;
    st.k.resize(k * Hkv * cb), st.v.resize(k * Hkv * cb), st.pos.resize(k);
    for (auto* g : {&st.k_scale, &st.k_zero, &st.v_scale, &st.v_zero}) g->resize(k * Hkv * Gn);
    std::vector<float> a(k);
    const AkvColdStage stage{st.k.data(),       st.v.data(),      st.k_scale.data(), st.k_zero.data(),
                             st.v_scale.data(), st.v_zero.data(), st.pos.data(),     a.data(),
                             k};
    cold_saturations_ += AkvStageColdPicks(*cold_, l, picks, lay, plan_.cold_bits, stage, 0);
    AkvColdAppendParams ap;
    ap.layout = lay;
    ap.tiers = t;
    ap.stage = stage;
    ap.rows = &k;
    ap.warm_limit = config_.WarmAfterStep();
    ap.num_layers = 1;
    const int32_t taken_before = t.counts[kAkvTotColdTaken];
    if (!AkvColdAppendRef(ap)) {
      const char* why = AkvColdAppendValidate(ap);
      return absl::InternalError(absl::StrCat("akv cold append: ", why ? why : "invalid params"));
    }
    const int64_t taken = t.counts[kAkvTotColdTaken] - taken_before;
    AkvDropTakenColdRows(cold_.get(), l, picks, taken);
    cold_promoted_[l] += taken;
  }
  return absl::OkStatus();
}

}  // namespace kvstream
