// CPU twin of akv_select (akv.md §4 steps 4-6; the rules are spelled out in
// akv_manage.h): std::stable_sort on the 64-bit keys of akv_layout.h, which
// order by (score, pos) exactly as the GPU radix selection does. Keys are
// unique (positions are), so twin and kernel pick identical sets.
#include <algorithm>
#include <vector>

#include "kernels/akv/akv_manage.h"

namespace kvstream {
namespace {

struct Cand {
  uint64_t key;
  int index;
};

// Sorts by key and keeps the first k (all if k >= size).
void KeepSmallest(std::vector<Cand>* c, size_t k) {
  std::stable_sort(c->begin(), c->end(), [](const Cand& x, const Cand& y) { return x.key < y.key; });
  if (c->size() > k) c->resize(k);
}

std::vector<int> SortedIndices(const std::vector<Cand>& c) {
  std::vector<int> r;
  r.reserve(c.size());
  for (const Cand& x : c) r.push_back(x.index);
  std::sort(r.begin(), r.end());
  return r;
}

void SelectLayer(const AkvSelectParams& p, int l) {
  const AkvLayout& lay = p.layout;
  const AkvPolicy& pol = p.policy;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, l);
  int32_t* cnt = t.counts;
  int32_t* demote_out = p.lists.demote + static_cast<int64_t>(l) * lay.hot_capacity;
  int32_t* promote_out = p.lists.promote + static_cast<int64_t>(l) * lay.warm_capacity;
  int32_t* cold_out = p.lists.cold + static_cast<int64_t>(l) * lay.warm_capacity;
  const int n_hot = std::clamp(cnt[kAkvNHot], 0, lay.hot_capacity);
  const int n_warm = std::clamp(cnt[kAkvNWarm], 0, lay.warm_capacity);
  const int hb = pol.hot_budget_live ? *pol.hot_budget_live : pol.hot_budget;
  const int recent = AkvRecentProtected(pol, hb);
  // Capacity guards (never hit when C_hot / C_warm follow akv.md §3): promoted
  // rows must fit the hot tail, demoted rows the warm tail.
  const int cap = std::min(AkvPromoteCap(pol, hb), lay.hot_capacity - n_hot);
  const bool fifo = pol.mode == AkvScoring::kFifo;

  // Step 4: promotion candidates, largest a first (ties: larger pos).
  std::vector<Cand> c;
  int capped = 0;
  if (cap > 0) {
    for (int j = 0; j < n_warm; ++j) {
      if (t.warm_a[j] > pol.promote_threshold) c.push_back({AkvKeyDescending(t.warm_a[j], t.warm_pos[j]), j});
    }
    capped = std::max(0, static_cast<int>(c.size()) - cap);
    KeepSmallest(&c, cap);
  }
  std::vector<int> promote = SortedIndices(c);

  // Step 5: demotion over hot ++ promoted (s = 1.0).
  const int vh = n_hot + static_cast<int>(promote.size());
  auto vpos = [&](int i) { return i < n_hot ? t.hot_pos[i] : t.warm_pos[promote[i - n_hot]]; };
  auto vscore = [&](int i) { return i < n_hot ? t.hot_score[i] : 1.0f; };
  std::vector<int> demote;
  std::vector<bool> cancelled(promote.size(), false);
  int overflow = 0;
  if (vh > hb + pol.eviction_batch_size - 1) {
    ++cnt[kAkvTotDemotionEvents];
    const int target = vh - hb;
    std::vector<Cand> by_pos;  // newest first
    for (int i = 0; i < vh; ++i) by_pos.push_back({AkvKeyDescending(0.0f, vpos(i)), i});
    KeepSmallest(&by_pos, static_cast<size_t>(std::max(recent, 0)));
    std::vector<bool> prot(vh, false);
    for (const Cand& x : by_pos) prot[x.index] = true;
    c.clear();
    for (int i = 0; i < vh; ++i) {
      if (prot[i] || vpos(i) < pol.initial_tokens_protected) continue;
      c.push_back({fifo ? AkvKeyPos(vpos(i)) : AkvKeyAscending(vscore(i), vpos(i)), i});
    }
    const int take = std::min({target, static_cast<int>(c.size()), lay.warm_capacity - n_warm});
    overflow = target - take;
    KeepSmallest(&c, take);
    for (int i : SortedIndices(c)) {
      if (i < n_hot) {
        demote.push_back(i);
      } else {
        cancelled[i - n_hot] = true;  // promoted and demoted: stays warm
      }
    }
  }
  std::vector<int> promote_final;
  std::vector<bool> leaving(n_warm, false);
  for (size_t k = 0; k < promote.size(); ++k) {
    if (cancelled[k]) continue;
    promote_final.push_back(promote[k]);
    leaving[promote[k]] = true;
  }

  // Step 6: warm -> cold over the warm rows that stay ++ the demoted rows (w = s).
  std::vector<int> cold;
  const int present = n_warm - static_cast<int>(promote_final.size()) + static_cast<int>(demote.size());
  const bool trigger = pol.warm_budget == 0 ? present > 0 : present > pol.warm_budget + pol.eviction_batch_size - 1;
  if (trigger) {
    c.clear();
    for (int i = 0; i < n_warm + static_cast<int>(demote.size()); ++i) {
      if (i < n_warm && leaving[i]) continue;
      const float w = i < n_warm ? t.warm_score[i] : t.hot_score[demote[i - n_warm]];
      const int32_t pos = i < n_warm ? t.warm_pos[i] : t.hot_pos[demote[i - n_warm]];
      c.push_back({fifo ? AkvKeyPos(pos) : AkvKeyAscending(w, pos), i});
    }
    KeepSmallest(&c, static_cast<size_t>(present - pol.warm_budget));
    cold = SortedIndices(c);
  }

  std::copy(demote.begin(), demote.end(), demote_out);
  std::copy(promote_final.begin(), promote_final.end(), promote_out);
  std::copy(cold.begin(), cold.end(), cold_out);
  cnt[kAkvNDemote] = static_cast<int32_t>(demote.size());
  cnt[kAkvNPromote] = static_cast<int32_t>(promote_final.size());
  cnt[kAkvNCold] = static_cast<int32_t>(cold.size());
  cnt[kAkvStepHotOverflow] = overflow;
  cnt[kAkvStepPromoteCapped] = capped;
  cnt[kAkvTotHotOverflow] += overflow;
  cnt[kAkvTotPromoteCapped] += capped;
}

}  // namespace

bool AkvSelectRef(const AkvSelectParams& p) {
  if (AkvSelectValidate(p) != nullptr) return false;
  for (int l = 0; l < p.num_layers; ++l) SelectLayer(p, l);
  return true;
}

}  // namespace kvstream
