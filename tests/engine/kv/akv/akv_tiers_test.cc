// AKV sequence cache on the CPU twins, driven step by step with random q/k/v
// (akv.md §9): (4) per-step tier invariants, (6) a planted warm key aligned
// with the query is promoted within the cap, (7) cold rows reach the host,
// attention equals the reference over hot + warm only, report bytes equal
// the buffers.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>

#include "engine/kv/akv/akv_cold.h"
#include "engine/kv/akv/akv_strategy.h"

namespace kvstream {
namespace {

KvGeometry Geometry(int64_t layers, int64_t heads, int64_t kv_heads) {
  KvGeometry g;
  g.n_layers = layers;
  g.n_heads = heads;
  g.n_kv_heads = kv_heads;
  g.head_dim = 64;
  g.context_length = 4096;
  return g;
}

struct Driver {
  KvGeometry g;
  AkvStrategy strategy;
  std::unique_ptr<SequenceCache> owned;
  AkvSequenceCache* cache = nullptr;
  int64_t step = 0;

  Driver(const KvGeometry& geo, std::map<std::string, KnobValue> knobs, int64_t max_tokens) : g(geo), strategy(geo) {
    StrategyConfig c;
    c.strategy = "akv";
    c.knobs = std::move(knobs);
    c.max_tokens = max_tokens;
    auto r = strategy.Open(c);
    EXPECT_TRUE(r.ok()) << r.status();
    owned = std::move(*r);
    cache = static_cast<AkvSequenceCache*>(owned.get());
  }

  // One step of n rows; q_fn/k_fn give the rows (layer-independent). Returns
  // the last layer's output.
  at::Tensor Step(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
    const int64_t n = q.size(0);
    SeqStep s;
    s.start_pos = cache->tokens_seen();
    s.n_new = n;
    StepContext ctx;
    ctx.step = step++;
    at::Tensor out;
    for (int64_t l = 0; l < g.n_layers; ++l) {
      out = at::full({n, g.n_heads, g.head_dim}, NAN);  // poisoned
      absl::Status st = cache->Attend(l, q, k, v, out, s, ctx);
      EXPECT_TRUE(st.ok()) << st;
    }
    absl::Status st = cache->EndStep(s, ctx);
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }
  at::Tensor Rand(int64_t n, int64_t heads, float scale = 1.0f) {
    return at::randn({n, heads, g.head_dim}) * scale;
  }
};

TEST(AkvTiers, EveryStepPartitionsSeenPositionsAndKeepsSinksAndNewestHot) {
  at::manual_seed(11);
  const int hot = 24, anchors = 6, sinks = 2, batch = 4, warm = 40;
  Driver d(Geometry(3, 4, 2),
           {{"hot_budget", int64_t{hot}},
            {"n_anchors", int64_t{anchors}},
            {"initial_tokens_protected", int64_t{sinks}},
            {"eviction_batch_size", int64_t{batch}},
            {"warm_budget", int64_t{warm}},
            {"prefill_chunk_tokens", int64_t{16}},
            {"group_size", int64_t{32}}},
           400);
  // A 40-token prompt in chunks of 16, then 200 decode tokens.
  std::vector<int64_t> sizes = {16, 16, 8};
  for (int i = 0; i < 200; ++i) sizes.push_back(1);
  bool saw_warm = false, saw_cold = false;
  for (int64_t n : sizes) {
    d.Step(d.Rand(n, 4), d.Rand(n, 2), d.Rand(n, 2));
    const int64_t seen = d.cache->tokens_seen();
    for (int layer = 0; layer < 3; ++layer) {
      const auto s = d.cache->Snapshot(layer);
      std::set<int32_t> all;
      for (const auto* tier : {&s.hot_pos, &s.warm_pos, &s.cold_pos}) {
        for (int32_t p : *tier) {
          EXPECT_TRUE(p >= 0 && p < seen) << p;
          EXPECT_TRUE(all.insert(p).second) << "position " << p << " in two tiers";
        }
      }
      EXPECT_EQ(s.evicted, 0);
      EXPECT_EQ(static_cast<int64_t>(all.size()), seen) << "tiers must partition the seen positions";
      EXPECT_LE(static_cast<int64_t>(s.hot_pos.size()), hot + batch - 1 + s.hot_overflow);
      EXPECT_LE(static_cast<int64_t>(s.warm_pos.size()), warm + batch - 1);
      const std::set<int32_t> hot_set(s.hot_pos.begin(), s.hot_pos.end());
      for (int64_t p = 0; p < std::min<int64_t>(sinks, seen); ++p) EXPECT_TRUE(hot_set.count(p)) << "sink " << p;
      for (int64_t p = std::max<int64_t>(0, seen - (hot - anchors)); p < seen; ++p) {
        EXPECT_TRUE(hot_set.count(p)) << "recent position " << p << " of " << seen;
      }
      saw_warm = saw_warm || !s.warm_pos.empty();
      saw_cold = saw_cold || !s.cold_pos.empty();
    }
  }
  EXPECT_TRUE(saw_warm);
  EXPECT_TRUE(saw_cold);
}

TEST(AkvTiers, PlantedWarmKeysAlignedWithTheQueryArePromotedWithinTheCap) {
  at::manual_seed(5);
  // One KV head; hot 16 with 4 anchors; cap = min(hot/8, anchors) = 2.
  Driver d(Geometry(1, 2, 1),
           {{"hot_budget", int64_t{16}},
            {"n_anchors", int64_t{4}},
            {"initial_tokens_protected", int64_t{0}},
            {"eviction_batch_size", int64_t{1}},
            {"warm_budget", int64_t{200}},
            {"warm_bits", int64_t{8}}},
           200);
  at::Tensor u = at::zeros({64});
  u[3] = 1.0f;
  auto orth = [&](at::Tensor x) {  // remove the u component so nothing else aligns with it
    x.select(-1, 3).zero_();
    return x;
  };
  const std::set<int32_t> planted = {5, 6, 7, 8};
  for (int p = 0; p < 60; ++p) {
    at::Tensor k = planted.count(p) ? (u * 4.0f).view({1, 1, 64}) : orth(d.Rand(1, 1, 0.3f));
    d.Step(orth(d.Rand(1, 2, 0.3f)), k, d.Rand(1, 1));
  }
  auto before = d.cache->Snapshot(0);
  const std::set<int32_t> warm_before(before.warm_pos.begin(), before.warm_pos.end());
  for (int32_t p : planted) ASSERT_TRUE(warm_before.count(p)) << "planted key " << p << " should be warm by now";
  // A query aligned with u: the planted keys take nearly all the attention.
  at::Tensor q = (u * 6.0f).view({1, 1, 64}).expand({1, 2, 64}).contiguous();
  d.Step(q, orth(d.Rand(1, 1, 0.3f)), d.Rand(1, 1));
  auto after = d.cache->Snapshot(0);
  const std::set<int32_t> hot_after(after.hot_pos.begin(), after.hot_pos.end());
  int promoted = 0;
  for (int32_t p : planted) promoted += hot_after.count(p);
  EXPECT_EQ(promoted, 2) << "cap = min(hot_budget/8, n_anchors) = 2";
  EXPECT_EQ(after.promoted - before.promoted, 2);
  EXPECT_EQ(after.promote_capped - before.promote_capped, 2);
  const CacheReport r = d.cache->Report();
  EXPECT_EQ(r.stats.at("promotions_warm_to_hot"), static_cast<double>(after.promoted));
  EXPECT_GE(r.stats.at("promotions_capped"), 2.0);
}

TEST(AkvTiers, ColdRowsReachTheHostAndAttentionCoversHotAndWarmOnly) {
  at::manual_seed(3);
  Driver d(Geometry(2, 4, 2),
           {{"hot_budget", int64_t{16}},
            {"n_anchors", int64_t{4}},
            {"initial_tokens_protected", int64_t{1}},
            {"eviction_batch_size", int64_t{2}},
            {"warm_budget", int64_t{24}},
            {"cold_bits", int64_t{4}},
            {"group_size", int64_t{64}}},
           700);
  for (int i = 0; i < 600; ++i) d.Step(d.Rand(1, 4), d.Rand(1, 2), d.Rand(1, 2));
  auto s = d.cache->Snapshot(1);
  EXPECT_GT(s.cold_pos.size(), 500u);
  EXPECT_EQ(s.evicted, 0);

  // One more step on layer 0: the output equals the kernels' fp64 reference
  // over the tiers as they stand after the append (hot + warm, never cold).
  at::Tensor q = d.Rand(1, 4), k = d.Rand(1, 2), v = d.Rand(1, 2);
  SeqStep st;
  st.start_pos = d.cache->tokens_seen();
  st.n_new = 1;
  StepContext ctx;
  ctx.step = 10000;
  at::Tensor out = at::full({1, 4, 64}, NAN);
  ASSERT_TRUE(d.cache->Attend(0, q, k, v, out, st, ctx).ok());
  const AkvTierSet& t = d.cache->managed_tiers();
  AkvAttentionParams p;
  p.layout = t.layout;
  p.tiers = t.Tiers();
  p.layer = 0;
  p.q = q.const_data_ptr();
  p.q_pos = d.cache->step_positions().const_data_ptr<int32_t>();
  at::Tensor ref = at::full({1, 4, 64}, NAN), lse = at::full({1, 4}, NAN);
  p.out = ref.data_ptr();
  p.lse = lse.data_ptr<float>();
  p.num_rows = 1;
  p.num_heads = 4;
  p.scale = 0.125f;
  ASSERT_TRUE(AkvAttentionRef(p)) << AkvAttentionValidate(p);
  EXPECT_LE((out - ref).abs().max().item<float>(), 1e-5f * std::max(1.0f, ref.abs().max().item<float>()));
  ASSERT_TRUE(d.cache->Attend(1, q, k, v, out, st, ctx).ok());
  ASSERT_TRUE(d.cache->EndStep(st, ctx).ok());

  // Report bytes = buffers really allocated; cold bytes = whole host blocks.
  const CacheReport r = d.cache->Report();
  int64_t device = t.Bytes() + d.cache->plan().StepRows() * (4 + 4 * 4);
  EXPECT_EQ(r.kv_bytes_device, device);
  const double cold_rows = r.stats.at("tokens_cold");
  EXPECT_GT(cold_rows, 1000.0);
  const int64_t row_bytes = 2 * 2 * (64 * 4 / 8) + 4 * 2 * 1 * 2 + 4;
  int64_t blocks = 0;
  for (const auto& l : r.layers) blocks += (static_cast<int64_t>(l.stats.at("cold")) + 255) / 256;
  EXPECT_EQ(r.kv_bytes_host, blocks * 256 * row_bytes);
  EXPECT_EQ(r.tokens_seen, 601);
  EXPECT_EQ(r.tokens_held, 601);
  EXPECT_DOUBLE_EQ(r.compression_ratio, static_cast<double>(r.dense_equivalent_bytes) /
                                            static_cast<double>(r.kv_bytes_device + r.kv_bytes_host));
  EXPECT_EQ(r.strategy, "akv");
}

// The cold tier's rows can be read back and removed: the others keep
// their order, and blocks left empty are freed.
TEST(AkvColdTier, RemoveFillsHolesFromTheTailAndCopiesSeeTheRowsLeft) {
  AkvColdTier cold(/*num_layers=*/2, /*num_kv_heads=*/2, /*head_dim=*/64, /*group_size=*/64, /*cold_bits=*/4);
  const int n = 600, cc = 64 * 4 / 8;
  AkvColdScratch in;
  in.k.resize(size_t(n) * 2 * cc), in.v.resize(size_t(n) * 2 * cc);
  for (auto* a : {&in.k_scale, &in.k_zero, &in.v_scale, &in.v_zero}) a->resize(size_t(n) * 2);
  in.pos.resize(n);
  for (int i = 0; i < n; ++i) {
    in.pos[i] = 1000 + i;
    for (int b = 0; b < 2 * cc; ++b) in.k[size_t(i) * 2 * cc + b] = static_cast<uint8_t>(i + b);
    in.k_scale[size_t(i) * 2 + 1] = static_cast<uint16_t>(3 * i);
    in.v_zero[size_t(i) * 2] = static_cast<uint16_t>(i);
  }
  cold.Append(1, in.View(n));
  ASSERT_EQ(cold.Rows(1), n);
  const int64_t bytes = cold.Bytes();
  std::vector<int64_t> gone;
  for (int64_t r = 0; r < n; r += 3) gone.push_back(r);  // every third row, across the three blocks
  for (int64_t r = 400; r < n; ++r) {
    if (r % 3 != 0) gone.push_back(r);  // and everything past 399
  }
  std::sort(gone.begin(), gone.end());
  const std::set<int64_t> removed(gone.begin(), gone.end());
  cold.Remove(1, gone);
  const int64_t left = n - static_cast<int64_t>(gone.size());
  ASSERT_EQ(cold.Rows(1), left);
  // Every row not removed is still there, once, with its own bytes.
  std::vector<int64_t> rows(static_cast<size_t>(left));
  std::iota(rows.begin(), rows.end(), 0);
  AkvColdScratch out;
  cold.CopyRows(1, rows, &out);
  std::set<int> seen;
  for (int64_t j = 0; j < left; ++j) {
    const int i = out.pos[j] - 1000;
    ASSERT_TRUE(i >= 0 && i < n && !removed.count(i)) << "row " << j << " holds pos " << out.pos[j];
    EXPECT_TRUE(seen.insert(i).second) << i;
    EXPECT_EQ(cold.Pos(1, j), 1000 + i);
    EXPECT_EQ(out.k[j * 2 * cc + 5], static_cast<uint8_t>(i + 5));
    EXPECT_EQ(out.v_zero[j * 2], static_cast<uint16_t>(i));
  }
  EXPECT_EQ(static_cast<int64_t>(seen.size()), left);
  // CopyKeys over a run crossing a block boundary equals CopyRows' keys.
  const int first = 200, m = 66;
  std::vector<uint8_t> k(size_t(m) * 2 * cc);
  std::vector<uint16_t> ks(size_t(m) * 2), kz(size_t(m) * 2);
  std::vector<int32_t> pos(m);
  cold.CopyKeys(1, first, m, k.data(), ks.data(), kz.data(), pos.data());
  for (int j = 0; j < m; ++j) {
    EXPECT_EQ(pos[j], out.pos[first + j]);
    EXPECT_EQ(ks[size_t(j) * 2 + 1], out.k_scale[size_t(first + j) * 2 + 1]);
    EXPECT_EQ(0, std::memcmp(&k[size_t(j) * 2 * cc], &out.k[size_t(first + j) * 2 * cc], 2 * cc));
  }
  EXPECT_LT(cold.Bytes(), bytes) << "266 rows need two blocks of 256, not three";
  EXPECT_EQ(cold.Rows(0), 0);
}

// Cold scan (cold_scan_interval > 0, akv_cold_scan.h): planted keys that went
// cold come back to warm once a query leans on them, within the promotion
// cap, and the tiers still partition every seen position.
TEST(AkvTiers, ColdScanTakesAttendedColdRowsBackToWarm) {
  at::manual_seed(11);
  Driver d(Geometry(1, 2, 1),
           {{"hot_budget", int64_t{16}},
            {"n_anchors", int64_t{4}},
            {"initial_tokens_protected", int64_t{0}},
            {"eviction_batch_size", int64_t{8}},
            {"warm_budget", int64_t{24}},
            {"warm_bits", int64_t{8}},
            {"cold_bits", int64_t{8}},
            {"group_size", int64_t{64}},
            {"promote_max_per_step", int64_t{2}},
            {"cold_scan_interval", int64_t{1}}},
           300);
  at::Tensor u = at::zeros({64});
  u[3] = 1.0f;
  auto orth = [&](at::Tensor x) {
    x.select(-1, 3).zero_();
    return x;
  };
  const std::set<int32_t> planted = {5, 6, 7, 8};
  // Queries lean slightly away from u: the planted keys score lowest, so they
  // are the first to leave warm for cold, and no scan takes them back.
  const at::Tensor away = (u * -1.0f).view({1, 1, 64});
  for (int p = 0; p < 120; ++p) {
    at::Tensor k = planted.count(p) ? (u * 4.0f).view({1, 1, 64}) : orth(d.Rand(1, 1, 0.3f));
    d.Step(orth(d.Rand(1, 2, 0.3f)) + away, k, d.Rand(1, 1));
  }
  auto before = d.cache->Snapshot(0);
  const std::set<int32_t> cold_before(before.cold_pos.begin(), before.cold_pos.end());
  for (int32_t p : planted) {
    const bool hot = std::count(before.hot_pos.begin(), before.hot_pos.end(), p) > 0;
    const bool warm = std::count(before.warm_pos.begin(), before.warm_pos.end(), p) > 0;
    ASSERT_TRUE(cold_before.count(p)) << "planted key " << p << " should be cold by now (hot " << hot << " warm "
                                      << warm << ", cold rows " << before.cold_pos.size() << ")";
  }
  EXPECT_EQ(d.cache->Report().stats.at("promotions_cold_to_warm"), 0.0) << "nothing leaned on cold rows yet";
  // Queries aligned with u: the planted keys' share passes the threshold.
  at::Tensor q = (u * 6.0f).view({1, 1, 64}).expand({1, 2, 64}).contiguous();
  for (int i = 0; i < 8; ++i) d.Step(q, orth(d.Rand(1, 1, 0.3f)), d.Rand(1, 1));
  auto after = d.cache->Snapshot(0);
  std::set<int32_t> back;
  for (const auto* tier : {&after.hot_pos, &after.warm_pos}) {
    for (int32_t p : *tier) {
      if (planted.count(p)) back.insert(p);
    }
  }
  EXPECT_GE(back.size(), 2u) << "planted rows back in hot or warm";
  const CacheReport r = d.cache->Report();
  EXPECT_GE(r.stats.at("promotions_cold_to_warm"), 2.0);
  EXPECT_GE(r.stats.at("cold_scans"), 128.0) << "one scan per step";
  // Partition: every seen position is in exactly one tier (nothing evicted).
  std::vector<int32_t> all;
  for (const auto* tier : {&after.hot_pos, &after.warm_pos, &after.cold_pos}) {
    all.insert(all.end(), tier->begin(), tier->end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(d.cache->tokens_seen()));
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], static_cast<int32_t>(i));
  EXPECT_EQ(after.evicted, 0);
  EXPECT_EQ(r.stats.at("tokens_evicted"), 0.0);
}

TEST(AkvTiers, WithoutTheColdTierWarmOverflowIsEvictedAndCounted) {
  at::manual_seed(9);
  Driver d(Geometry(1, 2, 1),
           {{"hot_budget", int64_t{16}},
            {"n_anchors", int64_t{4}},
            {"eviction_batch_size", int64_t{1}},
            {"warm_budget", int64_t{16}},
            {"enable_cold_tier", false}},
           200);
  for (int i = 0; i < 100; ++i) d.Step(d.Rand(1, 2), d.Rand(1, 1), d.Rand(1, 1));
  auto s = d.cache->Snapshot(0);
  EXPECT_TRUE(s.cold_pos.empty());
  EXPECT_EQ(static_cast<int64_t>(s.hot_pos.size() + s.warm_pos.size()) + s.evicted, 100);
  EXPECT_EQ(s.warm_pos.size(), 16u);
  const CacheReport r = d.cache->Report();
  EXPECT_EQ(r.kv_bytes_host, 0);
  EXPECT_EQ(r.stats.at("evictions"), static_cast<double>(s.evicted));
}

// HYBRID and FIFO protect the recent_tokens_protected newest rows (plus
// sinks) instead of hot_budget - n_anchors; the partition holds as well.
TEST(AkvTiers, HybridAndFifoKeepTheirRecencyWindowAndPartition) {
  for (const std::string mode : {"HYBRID", "FIFO"}) {
    at::manual_seed(13);
    const int recent = 10, sinks = 3;
    Driver d(Geometry(2, 4, 2),
             {{"scoring_strategy", mode},
              {"hot_budget", int64_t{24}},
              {"recent_tokens_protected", int64_t{recent}},
              {"initial_tokens_protected", int64_t{sinks}},
              {"eviction_batch_size", int64_t{2}},
              {"warm_budget", int64_t{30}}},
             300);
    for (int i = 0; i < 150; ++i) {
      d.Step(d.Rand(1, 4), d.Rand(1, 2), d.Rand(1, 2));
      const int64_t seen = d.cache->tokens_seen();
      const auto s = d.cache->Snapshot(1);
      std::set<int32_t> all(s.hot_pos.begin(), s.hot_pos.end());
      all.insert(s.warm_pos.begin(), s.warm_pos.end());
      all.insert(s.cold_pos.begin(), s.cold_pos.end());
      ASSERT_EQ(static_cast<int64_t>(all.size()), seen) << mode;
      ASSERT_EQ(s.hot_pos.size() + s.warm_pos.size() + s.cold_pos.size(), all.size()) << mode;
      const std::set<int32_t> hot(s.hot_pos.begin(), s.hot_pos.end());
      for (int64_t p = std::max<int64_t>(0, seen - recent); p < seen; ++p) ASSERT_TRUE(hot.count(p)) << mode << " " << p;
      for (int64_t p = 0; p < std::min<int64_t>(sinks, seen); ++p) ASSERT_TRUE(hot.count(p)) << mode << " sink " << p;
      if (mode == "FIFO" && !s.warm_pos.empty() && !s.cold_pos.empty()) {
        // FIFO: everything in cold is older than everything warm.
        ASSERT_LT(*std::max_element(s.cold_pos.begin(), s.cold_pos.end()),
                  *std::min_element(s.warm_pos.begin(), s.warm_pos.end()));
      }
    }
  }
}

// adaptive_hot_frac grows the hot tier with the tokens seen; protected
// layers keep every token hot and report it.
TEST(AkvTiers, AdaptiveHotFractionAndProtectedLayers) {
  at::manual_seed(17);
  Driver d(Geometry(3, 4, 2),
           {{"hot_budget", int64_t{16}},
            {"n_anchors", int64_t{4}},
            {"eviction_batch_size", int64_t{1}},
            {"adaptive_hot_frac", 0.5},
            {"protect_first_layers", int64_t{1}}},
           400);
  EXPECT_EQ(d.cache->plan().managed_layers, 2);
  EXPECT_EQ(d.cache->plan().dense_layers, 1);
  for (int i = 0; i < 300; ++i) d.Step(d.Rand(1, 4), d.Rand(1, 2), d.Rand(1, 2));
  const auto s = d.cache->Snapshot(0);  // managed index 0 = model layer 1
  // hot = max(16, floor(0.5 * P)) after each demotion: P = 300 -> 150.
  EXPECT_GE(s.hot_pos.size(), 149u);
  EXPECT_LE(s.hot_pos.size(), 151u);
  const CacheReport r = d.cache->Report();
  EXPECT_EQ(r.layers[0].detail, "protected: hot=300");
  EXPECT_EQ(r.layers[0].tokens_held, 300);
  EXPECT_EQ(r.layers[1].stats.at("hot"), static_cast<double>(s.hot_pos.size()));
}

}  // namespace
}  // namespace kvstream
