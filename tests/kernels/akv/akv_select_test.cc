// CPU tests of the AKV select and migrate twins (akv.md §4 steps 4-6, §9 test
// 5): demote / promote / warm->cold lists with ties, protected rows (sinks and
// the R newest), caps and overflow counters, cancellation of a promotion by
// demotion; migration keeps tier order, moves the right bytes and partitions
// positions; append.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <tuple>
#include <vector>

#include "kernels/akv/akv.h"
#include "tests/kernels/akv/akv_problem.h"

namespace kvstream {
namespace {

using testing::AkvProblem;
using testing::AkvShape;
using testing::MakeAkvProblem;

// One layer, Hkv 1, D 64, fp32; hot rows get (pos, s), warm rows (pos, w, a).
struct State {
  AkvProblem pr;
  std::vector<int32_t> demote, promote, cold;
  AkvPolicy pol;

  State(const std::vector<std::pair<int, float>>& hot, const std::vector<std::tuple<int, float, float>>& warm,
        int spare = 16) {
    AkvShape s;
    s.num_heads = 1;
    s.num_kv_heads = 1;
    s.n_hot = static_cast<int>(hot.size());
    s.n_warm = static_cast<int>(warm.size());
    s.rows = 0;
    s.spare_hot = s.spare_warm = spare;
    pr = MakeAkvProblem(s, 1234);
    for (size_t j = 0; j < hot.size(); ++j) std::tie(pr.hot_pos[j], pr.hot_score[j]) = hot[j];
    for (size_t j = 0; j < warm.size(); ++j) std::tie(pr.warm_pos[j], pr.warm_score[j], pr.warm_a[j]) = warm[j];
    demote.assign(pr.lay.hot_capacity, -1);
    promote.assign(pr.lay.warm_capacity, -1);
    cold.assign(pr.lay.warm_capacity, -1);
    pol.enable_promotion = false;
    pol.eviction_batch_size = 1;
    pol.warm_budget = 1000;
  }
  AkvLists Lists() { return AkvLists{demote.data(), promote.data(), cold.data()}; }
  int Count(int slot) const { return pr.counts[slot]; }
  std::vector<int32_t> List(const std::vector<int32_t>& l, int slot) const {
    return std::vector<int32_t>(l.begin(), l.begin() + Count(slot));
  }
  void Select() {
    AkvSelectParams p;
    p.layout = pr.lay;
    p.tiers = pr.Tiers();
    p.lists = Lists();
    p.policy = pol;
    ASSERT_TRUE(AkvSelectRef(p));
  }
};

// Hot slots listed by position (so expectations can name positions).
std::vector<int32_t> SlotsOf(const std::vector<int32_t>& pos_of_slot, std::vector<int> positions) {
  std::vector<int32_t> slots;
  for (int p : positions) slots.push_back(std::find(pos_of_slot.begin(), pos_of_slot.end(), p) - pos_of_slot.begin());
  std::sort(slots.begin(), slots.end());
  return slots;
}

TEST(AkvSelect, DemotesSmallestScoresAmongUnprotectedTiesToSmallerPos) {
  // slot -> pos 5,2,9,0,7,3,8,1,4,6; sinks 0,1; R = 8 - 4 = 4 newest (6..9).
  const float by_pos[10] = {0.0f, 0.0f, 0.3f, 0.1f, 0.05f, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f};
  std::vector<std::pair<int, float>> hot;
  for (int p : {5, 2, 9, 0, 7, 3, 8, 1, 4, 6}) hot.push_back({p, by_pos[p]});
  State st(hot, {});
  st.pol.hot_budget = 8;
  st.pol.n_anchors = 4;
  st.pol.initial_tokens_protected = 2;
  st.Select();
  EXPECT_EQ(st.List(st.demote, kAkvNDemote), SlotsOf(st.pr.hot_pos, {4, 3}));  // 0.05, then the 0.1 tie at pos 3
  EXPECT_EQ(st.Count(kAkvNPromote), 0);
  EXPECT_EQ(st.Count(kAkvNCold), 0);
  EXPECT_EQ(st.Count(kAkvStepHotOverflow), 0);
  EXPECT_EQ(st.Count(kAkvTotDemotionEvents), 1);
}

TEST(AkvSelect, FifoDemotesOldestUnprotectedRows) {
  std::vector<std::pair<int, float>> hot;
  for (int p : {3, 9, 0, 5, 1, 8, 2, 7, 6, 4}) hot.push_back({p, 0.0f});
  State st(hot, {});
  st.pol.mode = AkvScoring::kFifo;
  st.pol.hot_budget = 6;
  st.pol.recent_tokens_protected = 3;  // 7, 8, 9
  st.pol.initial_tokens_protected = 1;  // 0
  st.Select();
  EXPECT_EQ(st.List(st.demote, kAkvNDemote), SlotsOf(st.pr.hot_pos, {1, 2, 3, 4}));
}

TEST(AkvSelect, WaitsForTheBatchBeforeDemoting) {
  std::vector<std::pair<int, float>> hot;
  for (int p = 0; p < 11; ++p) hot.push_back({p, 0.5f});
  State st(hot, {});
  st.pol.hot_budget = 8;
  st.pol.eviction_batch_size = 4;  // trigger at n_hot > 11
  st.Select();
  EXPECT_EQ(st.Count(kAkvNDemote), 0);
  EXPECT_EQ(st.Count(kAkvTotDemotionEvents), 0);
  hot.push_back({11, 0.5f});
  State st2(hot, {});
  st2.pol = st.pol;
  st2.Select();
  EXPECT_EQ(st2.Count(kAkvNDemote), 4);  // back to the budget
}

TEST(AkvSelect, CountsHotOverflowWhenTooFewRowsAreEligible) {
  std::vector<std::pair<int, float>> hot;
  for (int p = 0; p < 10; ++p) hot.push_back({p, 0.1f});
  State st(hot, {});
  st.pol.hot_budget = 8;
  st.pol.n_anchors = 1;  // R = 7: pos 3..9 protected
  st.pol.initial_tokens_protected = 2;  // pos 0, 1 protected
  st.Select();
  EXPECT_EQ(st.List(st.demote, kAkvNDemote), SlotsOf(st.pr.hot_pos, {2}));
  EXPECT_EQ(st.Count(kAkvStepHotOverflow), 1);
  EXPECT_EQ(st.Count(kAkvTotHotOverflow), 1);
}

TEST(AkvSelect, PromotesLargestShareUpToCapTiesToLargerPos) {
  State st({{20, 0.5f}, {21, 0.5f}, {22, 0.5f}, {23, 0.5f}},
           {{1, 0.f, 0.2f}, {2, 0.f, 0.01f}, {3, 0.f, 0.2f}, {4, 0.f, 0.5f}, {5, 0.f, 0.06f}, {6, 0.f, 0.05f},
            {7, 0.f, 0.3f}, {8, 0.f, 0.2f}});
  st.pol.enable_promotion = true;
  st.pol.promote_threshold = 0.05f;  // strict: pos 6 (a = 0.05) is no candidate
  st.pol.promote_max_per_step = 3;
  st.pol.hot_budget = 16;
  st.Select();
  EXPECT_EQ(st.List(st.promote, kAkvNPromote), (std::vector<int32_t>{3, 6, 7}));  // a 0.5, 0.3, 0.2 @ pos 8
  EXPECT_EQ(st.Count(kAkvStepPromoteCapped), 3);
  EXPECT_EQ(st.Count(kAkvNDemote), 0);
}

TEST(AkvSelect, ImportanceCapIsAtMostTheAnchorCount) {
  State st({{20, 0.5f}}, {{1, 0.f, 0.4f}, {2, 0.f, 0.3f}, {3, 0.f, 0.2f}});
  st.pol.enable_promotion = true;
  st.pol.hot_budget = 64;  // default cap 64 / 8 = 8
  st.pol.n_anchors = 2;
  st.Select();
  EXPECT_EQ(st.List(st.promote, kAkvNPromote), (std::vector<int32_t>{0, 1}));
  st.pol.mode = AkvScoring::kFifo;  // FIFO never promotes
  st.Select();
  EXPECT_EQ(st.Count(kAkvNPromote), 0);
}

TEST(AkvSelect, PromotedRowPickedForDemotionStaysWarm) {
  State st({{10, 5.0f}, {11, 5.0f}, {12, 5.0f}, {13, 5.0f}}, {{1, 0.f, 0.9f}, {2, 0.f, 0.9f}, {3, 0.f, 0.9f}});
  st.pol.enable_promotion = true;
  st.pol.promote_max_per_step = 1;  // promotes pos 3 (tie on a: larger pos)
  st.pol.hot_budget = 4;
  st.pol.n_anchors = 3;
  st.pol.initial_tokens_protected = 0;
  st.Select();  // virtual hot = 5 rows; the promoted row has s = 1.0 < 5.0
  EXPECT_EQ(st.Count(kAkvNPromote), 0);
  EXPECT_EQ(st.Count(kAkvNDemote), 0);
  EXPECT_EQ(st.Count(kAkvStepHotOverflow), 0);
  EXPECT_EQ(st.Count(kAkvTotDemotionEvents), 1);
}

TEST(AkvSelect, ColdListTakesSmallestWIncludingJustDemotedRows) {
  State st({{5, 0.1f}, {6, 0.9f}, {7, 0.9f}}, {{1, 0.5f, 0.f}, {2, 0.2f, 0.f}, {3, 0.9f, 0.f}});
  st.pol.hot_budget = 2;
  st.pol.n_anchors = 1;  // R = 1
  st.pol.initial_tokens_protected = 0;
  st.pol.warm_budget = 3;
  st.Select();
  EXPECT_EQ(st.List(st.demote, kAkvNDemote), (std::vector<int32_t>{0}));  // pos 5, s 0.1
  EXPECT_EQ(st.List(st.cold, kAkvNCold), (std::vector<int32_t>{3}));    // virtual warm row 3 = the demoted one
  // Tie on w: the older row leaves first.
  State tie({{5, 0.2f}, {6, 0.9f}, {7, 0.9f}}, {{1, 0.5f, 0.f}, {2, 0.2f, 0.f}, {3, 0.9f, 0.f}});
  tie.pol = st.pol;
  tie.Select();
  EXPECT_EQ(tie.List(tie.cold, kAkvNCold), (std::vector<int32_t>{1}));
}

TEST(AkvSelect, ZeroWarmBudgetSendsEveryDemotedRowToCold) {
  State st({{0, 0.1f}, {1, 0.2f}, {2, 0.3f}, {3, 0.4f}}, {});
  st.pol.hot_budget = 2;
  st.pol.n_anchors = 0;  // R = 2
  st.pol.initial_tokens_protected = 0;
  st.pol.warm_budget = 0;
  st.Select();
  EXPECT_EQ(st.List(st.demote, kAkvNDemote), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(st.List(st.cold, kAkvNCold), (std::vector<int32_t>{0, 1}));
}

// Random states with many ties: every list is sorted, every chosen row beats
// every eligible row left behind under (score, pos), and the counts match.
TEST(AkvSelect, RandomTiedScoresPickTheSmallestKeys) {
  std::mt19937 rng(42);
  int checked = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int n_hot = 5 + rng() % 40, n_warm = rng() % 40;
    std::vector<int> pos(n_hot + n_warm);
    std::iota(pos.begin(), pos.end(), 0);
    std::shuffle(pos.begin(), pos.end(), rng);
    std::vector<std::pair<int, float>> hot;
    std::vector<std::tuple<int, float, float>> warm;
    for (int j = 0; j < n_hot; ++j) hot.push_back({pos[j], 0.25f * (rng() % 3)});
    for (int j = 0; j < n_warm; ++j) warm.push_back({pos[n_hot + j], 0.25f * (rng() % 3), 0.25f * (rng() % 3)});
    State st(hot, warm, 48);
    st.pol.mode = trial % 3 == 0 ? AkvScoring::kFifo : AkvScoring::kImportance;
    st.pol.enable_promotion = trial % 2 == 0;
    st.pol.promote_threshold = 0.3f;
    st.pol.hot_budget = 4 + rng() % 8;
    st.pol.n_anchors = rng() % st.pol.hot_budget;
    st.pol.initial_tokens_protected = rng() % 4;
    st.pol.recent_tokens_protected = rng() % 6;
    st.pol.warm_budget = rng() % 20;
    st.Select();
    const std::vector<int32_t> d = st.List(st.demote, kAkvNDemote), c = st.List(st.cold, kAkvNCold);
    EXPECT_TRUE(std::is_sorted(d.begin(), d.end()) && std::is_sorted(c.begin(), c.end())) << trial;
    if (st.pol.mode == AkvScoring::kFifo || st.Count(kAkvNPromote) > 0) continue;  // keys below: scored, no promotion
    // Demotion: no eligible hot row left behind has a smaller key than a demoted one.
    const int recent = AkvRecentProtected(st.pol, st.pol.hot_budget);
    std::vector<int32_t> sorted_pos(st.pr.hot_pos.begin(), st.pr.hot_pos.begin() + n_hot);
    std::sort(sorted_pos.rbegin(), sorted_pos.rend());
    const int32_t pos_r = recent >= n_hot ? -1 : (recent == 0 ? INT32_MAX : sorted_pos[recent - 1]);
    uint64_t max_chosen = 0, min_left = ~0ull;
    for (int j = 0; j < n_hot; ++j) {
      const int32_t p = st.pr.hot_pos[j];
      if (p >= pos_r || p < st.pol.initial_tokens_protected) continue;
      const uint64_t key = AkvKeyAscending(st.pr.hot_score[j], p);
      if (std::binary_search(d.begin(), d.end(), j)) max_chosen = std::max(max_chosen, key);
      else min_left = std::min(min_left, key);
    }
    if (!d.empty()) {
      EXPECT_LT(max_chosen, min_left) << trial;
      ++checked;
    }
  }
  EXPECT_GT(checked, 20) << "too few trials demoted anything";
}

// ---- migrate ------------------------------------------------------------------------

// One warm row (all heads) as it should look: codes, scale/zero, pos, w, a.
struct WarmRow {
  std::vector<uint8_t> k, v;
  std::vector<uint16_t> ks, kz, vs, vz;
  int32_t pos = 0;
  float w = 0.0f, a = 0.0f;
  bool operator==(const WarmRow&) const = default;
};

WarmRow WarmAt(const AkvProblem& pr, int l, int j) {
  const AkvLayout& lay = pr.lay;
  const size_t r = static_cast<size_t>(l) * lay.warm_capacity + j, hkv = lay.num_kv_heads;
  const size_t cb = lay.CodeBytes() * hkv, gn = lay.Groups() * hkv;
  WarmRow w;
  w.k.assign(pr.warm_k.begin() + r * cb, pr.warm_k.begin() + (r + 1) * cb);
  w.v.assign(pr.warm_v.begin() + r * cb, pr.warm_v.begin() + (r + 1) * cb);
  w.ks.assign(pr.wks.begin() + r * gn, pr.wks.begin() + (r + 1) * gn);
  w.kz.assign(pr.wkz.begin() + r * gn, pr.wkz.begin() + (r + 1) * gn);
  w.vs.assign(pr.wvs.begin() + r * gn, pr.wvs.begin() + (r + 1) * gn);
  w.vz.assign(pr.wvz.begin() + r * gn, pr.wvz.begin() + (r + 1) * gn);
  w.pos = pr.warm_pos[r];
  w.w = pr.warm_score[r];
  w.a = pr.warm_a[r];
  return w;
}

// Hot row j of layer l quantized as a demotion must store it.
WarmRow Demoted(const AkvProblem& pr, int l, int j) {
  const AkvLayout& lay = pr.lay;
  const int D = lay.head_dim, hkv = lay.num_kv_heads, cb = lay.CodeBytes(), gn = lay.Groups();
  const size_t r = static_cast<size_t>(l) * lay.hot_capacity + j;
  WarmRow w;
  w.k.resize(hkv * cb), w.v.resize(hkv * cb);
  for (auto* a : {&w.ks, &w.kz, &w.vs, &w.vz}) a->resize(hkv * gn);
  std::vector<float> x(D);
  for (int h = 0; h < hkv; ++h) {
    for (int d = 0; d < D; ++d) x[d] = LoadAsFloat(pr.hot_k.data(), (r * hkv + h) * D + d, lay.dtype);
    AkvQuantizeRowHost(x.data(), D, lay.warm_bits, lay.group_size, &w.k[h * cb], &w.ks[h * gn], &w.kz[h * gn]);
    for (int d = 0; d < D; ++d) x[d] = LoadAsFloat(pr.hot_v.data(), (r * hkv + h) * D + d, lay.dtype);
    AkvQuantizeRowHost(x.data(), D, lay.warm_bits, lay.group_size, &w.v[h * cb], &w.vs[h * gn], &w.vz[h * gn]);
  }
  w.pos = pr.hot_pos[r];
  w.w = pr.hot_score[r];
  return w;
}

std::vector<uint8_t> HotBytes(const AkvProblem& pr, int l, int j) {
  const size_t row = static_cast<size_t>(pr.lay.num_kv_heads) * pr.lay.head_dim * KvDTypeSize(pr.lay.dtype);
  const size_t r = static_cast<size_t>(l) * pr.lay.hot_capacity + j;
  std::vector<uint8_t> b(pr.hot_k.begin() + r * row, pr.hot_k.begin() + (r + 1) * row);
  b.insert(b.end(), pr.hot_v.begin() + r * row, pr.hot_v.begin() + (r + 1) * row);
  return b;
}

// Warm row j of layer l dequantized into hot-row bytes (K then V).
std::vector<uint8_t> Promoted(const AkvProblem& pr, int l, int j) {
  const AkvLayout& lay = pr.lay;
  const int D = lay.head_dim, hkv = lay.num_kv_heads, g = lay.group_size;
  const WarmRow w = WarmAt(pr, l, j);
  const size_t esz = KvDTypeSize(lay.dtype);
  std::vector<uint8_t> b(2 * hkv * D * esz);
  for (int kv = 0; kv < 2; ++kv) {
    for (int h = 0; h < hkv; ++h) {
      for (int d = 0; d < D; ++d) {
        const int code = testing::NaiveCode(&(kv ? w.v : w.k)[h * lay.CodeBytes()], d, lay.warm_bits);
        const int gi = h * lay.Groups() + d / g;
        const float x = static_cast<float>(code) * HalfBitsToFloat((kv ? w.vs : w.ks)[gi]) +
                        HalfBitsToFloat((kv ? w.vz : w.kz)[gi]);
        StoreFromFloat(b.data(), (kv * hkv + h) * D + d, x, lay.dtype);
      }
    }
  }
  return b;
}

TEST(AkvMigrate, MovesRowsKeepsTierOrderAndPartitionsPositions) {
  int seen_demote = 0, seen_promote = 0, seen_cold = 0;
  for (KvDType dtype : {KvDType::kFp32, KvDType::kBf16}) {
    for (int bits : {2, 4, 8}) {
      AkvShape s;
      s.n_hot = 40, s.n_warm = 30, s.spare_hot = 20, s.spare_warm = 40, s.layers = 2, s.dtype = dtype, s.bits = bits;
      AkvProblem pr = MakeAkvProblem(s, 50 + bits);
      const AkvProblem before = pr;
      const AkvLayout& lay = pr.lay;
      std::vector<int32_t> demote(2 * lay.hot_capacity), promote(2 * lay.warm_capacity), cold(2 * lay.warm_capacity);
      AkvSelectParams sp;
      sp.layout = lay;
      sp.tiers = pr.Tiers();
      sp.lists = AkvLists{demote.data(), promote.data(), cold.data()};
      sp.policy.hot_budget = 30;
      sp.policy.n_anchors = 8;
      sp.policy.eviction_batch_size = 1;
      sp.policy.promote_max_per_step = 4;
      sp.policy.warm_budget = 25;
      sp.num_layers = 2;
      ASSERT_TRUE(AkvSelectRef(sp));
      // Stage: same layout as warm.
      AkvProblem stage = MakeAkvProblem(s, 1);
      AkvMigrateParams mp;
      mp.layout = lay;
      mp.tiers = pr.Tiers();
      mp.lists = sp.lists;
      mp.stage = AkvColdStage{stage.warm_k.data(), stage.warm_v.data(), stage.wks.data(), stage.wkz.data(),
                              stage.wvs.data(), stage.wvz.data(), stage.warm_pos.data(), stage.warm_score.data()};
      mp.num_layers = 2;
      ASSERT_TRUE(AkvMigrateRef(mp));
      for (int l = 0; l < 2; ++l) {
        const int32_t* c0 = &before.counts[l * kAkvCountSlots];
        const int32_t* c = &pr.counts[l * kAkvCountSlots];
        const int nd = c[kAkvNDemote], np = c[kAkvNPromote], nc = c[kAkvNCold];
        seen_demote += nd, seen_promote += np, seen_cold += nc;
        const int32_t* D = &demote[l * lay.hot_capacity];
        const int32_t* P = &promote[l * lay.warm_capacity];
        const int32_t* Cl = &cold[l * lay.warm_capacity];
        ASSERT_EQ(c[kAkvNHot], c0[kAkvNHot] + np - nd);
        ASSERT_EQ(c[kAkvNWarm], c0[kAkvNWarm] + nd - np - nc);
        EXPECT_EQ(c[kAkvTotDemoted], nd);
        // Hot: survivors in their old order, then the promoted rows.
        int out = 0;
        for (int j = 0; j < c0[kAkvNHot]; ++j) {
          if (std::find(D, D + nd, j) != D + nd) continue;
          EXPECT_EQ(HotBytes(pr, l, out), HotBytes(before, l, j)) << "hot survivor " << j;
          EXPECT_EQ(pr.hot_pos[l * lay.hot_capacity + out], before.hot_pos[l * lay.hot_capacity + j]);
          EXPECT_EQ(pr.hot_score[l * lay.hot_capacity + out++], before.hot_score[l * lay.hot_capacity + j]);
        }
        for (int k = 0; k < np; ++k, ++out) {
          EXPECT_EQ(HotBytes(pr, l, out), Promoted(before, l, P[k])) << "promoted " << k;
          EXPECT_EQ(pr.hot_pos[l * lay.hot_capacity + out], before.warm_pos[l * lay.warm_capacity + P[k]]);
          EXPECT_EQ(pr.hot_score[l * lay.hot_capacity + out], 1.0f);
        }
        // Warm: virtual rows (old warm ++ demoted) minus promoted and cold, in order.
        auto virt = [&](int i) { return i < c0[kAkvNWarm] ? WarmAt(before, l, i) : Demoted(before, l, D[i - c0[kAkvNWarm]]); };
        out = 0;
        for (int i = 0; i < c0[kAkvNWarm] + nd; ++i) {
          if (std::find(P, P + np, i) != P + np || std::find(Cl, Cl + nc, i) != Cl + nc) continue;
          EXPECT_TRUE(WarmAt(pr, l, out++) == virt(i)) << "warm virtual row " << i;
        }
        for (int k = 0; k < nc; ++k) {
          WarmRow want = virt(Cl[k]);
          want.a = stage.warm_a[l * lay.warm_capacity + k];  // the stage keeps no a
          EXPECT_TRUE(WarmAt(stage, l, k) == want) << "stage " << k;
        }
        // Positions: hot + warm + stage partition the old hot + warm.
        std::multiset<int32_t> was, now;
        for (int j = 0; j < c0[kAkvNHot]; ++j) was.insert(before.hot_pos[l * lay.hot_capacity + j]);
        for (int j = 0; j < c0[kAkvNWarm]; ++j) was.insert(before.warm_pos[l * lay.warm_capacity + j]);
        for (int j = 0; j < c[kAkvNHot]; ++j) now.insert(pr.hot_pos[l * lay.hot_capacity + j]);
        for (int j = 0; j < c[kAkvNWarm]; ++j) now.insert(pr.warm_pos[l * lay.warm_capacity + j]);
        for (int k = 0; k < nc; ++k) now.insert(stage.warm_pos[l * lay.warm_capacity + k]);
        EXPECT_EQ(was, now) << "layer " << l;
      }
    }
  }
  EXPECT_GT(seen_demote, 0);
  EXPECT_GT(seen_promote, 0);
  EXPECT_GT(seen_cold, 0);
}

TEST(AkvAppend, AppendsAtTheTailAndCountsOverflow) {
  AkvShape s;
  s.n_hot = 5, s.spare_hot = 2, s.layers = 2, s.dtype = KvDType::kBf16;
  AkvProblem pr = MakeAkvProblem(s, 3);
  const AkvProblem before = pr;
  const int row = s.num_kv_heads * s.head_dim;
  std::vector<uint16_t> k(3 * row), v(3 * row);
  for (int i = 0; i < 3 * row; ++i) k[i] = FloatToBf16Bits(i * 0.5f), v[i] = FloatToBf16Bits(-i * 0.25f);
  const std::vector<int32_t> pos = {100, 101, 102};
  AkvAppendParams p;
  p.layout = pr.lay;
  p.tiers = pr.Tiers();
  p.layer = 1;
  p.k = k.data();
  p.v = v.data();
  p.pos = pos.data();
  p.rows = 3;
  ASSERT_TRUE(AkvAppendRef(p));
  const int32_t* c = &pr.counts[kAkvCountSlots];
  EXPECT_EQ(c[kAkvNHot], 7);
  EXPECT_EQ(c[kAkvTotAppendOverflow], 1);
  for (int r = 0; r < 2; ++r) {
    const size_t slot = pr.lay.hot_capacity + 5 + r;
    EXPECT_EQ(pr.hot_pos[slot], 100 + r);
    EXPECT_EQ(pr.hot_score[slot], 0.0f);
    EXPECT_EQ(0, std::memcmp(&pr.hot_k[slot * row * 2], &k[r * row], row * 2));
    EXPECT_EQ(0, std::memcmp(&pr.hot_v[slot * row * 2], &v[r * row], row * 2));
  }
  EXPECT_TRUE(std::equal(pr.hot_k.begin(), pr.hot_k.begin() + pr.lay.hot_capacity * row * 2, before.hot_k.begin()))
      << "layer 0 untouched";
}

// Batched decode append: row r lands in sequence r's hot tier at its own
// tail with its own position; a sequence whose hot tier is full counts it.
TEST(AkvAppend, BatchedRowsGoToTheirOwnSequences) {
  std::vector<AkvShape> shapes(3);
  const int hot[3][2] = {{5, 2}, {40, 0}, {1, 9}};  // n_hot, spare_hot (the second is full)
  for (int i = 0; i < 3; ++i) {
    shapes[i].dtype = KvDType::kBf16, shapes[i].layers = 2;
    shapes[i].n_hot = hot[i][0], shapes[i].spare_hot = hot[i][1];
  }
  testing::AkvBatch b = testing::MakeAkvBatch(shapes, 8);
  const int row = shapes[0].num_kv_heads * shapes[0].head_dim;
  std::vector<uint16_t> k(3 * row), v(3 * row);
  for (int i = 0; i < 3 * row; ++i) k[i] = FloatToBf16Bits(i * 0.5f), v[i] = FloatToBf16Bits(-i * 0.25f);
  const std::vector<AkvAttnSeq> rows = b.HostRows(1);
  const AkvAttnBatch batch = testing::BatchOf(rows.data(), 3);
  AkvAppendParams p;
  p.layout = b.layout;
  p.batch = &batch;
  p.k = k.data();
  p.v = v.data();
  p.rows = 3;
  ASSERT_TRUE(AkvAppendRef(p));
  for (int r = 0; r < 3; ++r) {
    const AkvProblem& pr = b.prs[r];
    const int32_t* c = &pr.counts[kAkvCountSlots];
    const bool full = hot[r][1] == 0;
    EXPECT_EQ(c[kAkvNHot], hot[r][0] + (full ? 0 : 1)) << r;
    EXPECT_EQ(c[kAkvTotAppendOverflow], full ? 1 : 0) << r;
    EXPECT_EQ(pr.counts[kAkvNHot], hot[r][0]) << r << ": layer 0 untouched";
    if (full) continue;
    const size_t slot = pr.lay.hot_capacity + hot[r][0];
    EXPECT_EQ(pr.hot_pos[slot], pr.q_pos[0]);
    EXPECT_EQ(pr.hot_score[slot], 0.0f);
    EXPECT_EQ(0, std::memcmp(&pr.hot_k[slot * row * 2], &k[r * row], row * 2)) << r;
    EXPECT_EQ(0, std::memcmp(&pr.hot_v[slot * row * 2], &v[r * row], row * 2)) << r;
  }
}

}  // namespace
}  // namespace kvstream
