// LaserKvSequenceCache on synthetic geometry (CPU twins), driven as the
// runner drives it: §9 tests 4 (accumulate counts), 5 (recursive counts),
// 8 (hybrid split), 9 (positions and sharing across layers), 11 (determinism,
// decode never recompresses), plus the dense fallback, the report and
// PredictBytes against the measured peak.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "tests/engine/kv/laser_kv/laser_kv_driver.h"

namespace kvstream {
namespace {

using testing::DriveLaser;
using testing::LaserGeometry;

LaserKvConfig Config(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "laser_kv";
  c.knobs = std::move(knobs);
  auto r = ParseLaserKvConfig(c, 1 << 17);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : LaserKvConfig{};
}

void ExpectStrictlyIncreasing(const std::vector<int32_t>& p) {
  for (size_t i = 1; i < p.size(); ++i) ASSERT_LT(p[i - 1], p[i]) << "at " << i;
}

// §9 test 4: S 12288, b 4096, B 4096 -> C 3072, 5120, 7168 (+ the 1024 tail),
// 8192 + q after prefill.
TEST(LaserKvCache, AccumulateCountsPerBlock) {
  const KvGeometry g = LaserGeometry();
  const int64_t q = 4, S = 12288;
  for (const char* method : {"EXACT", "LSH", "HYBRID"}) {
    LaserKvSequenceCache cache(g, Config({{"budget", int64_t{4096}}, {"query_len", q}, {"method", std::string(method)}}),
                               S + q + 2);
    std::vector<int64_t> c_sizes, t_sizes;
    ASSERT_TRUE(DriveLaser(cache, g, S + q, 2, [&](const SeqStep& s) {
      if (s.n_probe > 0) {
        c_sizes.push_back(static_cast<int64_t>(cache.held_positions().size()));
        t_sizes.push_back(static_cast<int64_t>(cache.tail_positions().size()));
      }
    }).ok());
    ASSERT_EQ(c_sizes.size(), 3u) << method;
    EXPECT_EQ(c_sizes[0], 3072) << method;
    EXPECT_EQ(c_sizes[1], 5120) << method;
    EXPECT_EQ(c_sizes[2], 7168 + 1024) << method << ": the last tail is merged (§4.4)";
    EXPECT_EQ(t_sizes[0], 1024);
    EXPECT_EQ(t_sizes[2], 0);
    EXPECT_EQ(cache.kept_after_prefill(), 8192);
    const CacheReport r = cache.Report();
    EXPECT_EQ(r.tokens_held, 8192 + q + 2);  // + the two decode tokens
    EXPECT_EQ(r.tokens_seen, S + q + 2);
    EXPECT_EQ(r.stats.at("tail_candidates"), 2048);
    EXPECT_EQ(r.stats.at("picks_exact") + r.stats.at("picks_lsh"), 3 * 2048);
    ExpectStrictlyIncreasing(cache.held_positions());
  }
}

// §9 test 5 (upstream's recursive test): B 4096, n 4, b 8192, S 16384.
TEST(LaserKvCache, RecursiveHoldsTheBudgetAfterEachBlock) {
  const KvGeometry g = LaserGeometry();
  const int64_t q = 4, S = 16384;
  LaserKvSequenceCache cache(g, Config({{"budget", int64_t{4096}}, {"query_len", q}, {"block_size", int64_t{8192}},
                                        {"compression_mode", std::string("RECURSIVE")}}), S + q + 1);
  std::vector<int64_t> held;
  std::vector<double> history;
  ASSERT_TRUE(DriveLaser(cache, g, S + q, 1, [&](const SeqStep& s) {
    if (s.n_probe == 0) return;
    held.push_back(static_cast<int64_t>(cache.held_positions().size()));
    history.push_back(cache.Report().stats.at("history_candidates"));
  }).ok());
  ASSERT_EQ(held.size(), 2u);
  EXPECT_EQ(held[0], 4096);
  EXPECT_EQ(held[1], 4096);
  // Block 1's pool: 3072 non-anchor history entries + 7168 middle = 10240.
  EXPECT_EQ(history[0], 0);
  EXPECT_EQ(history[1], 3072);
  const CacheReport r = cache.Report();
  EXPECT_EQ(r.stats.at("picks_exact") + r.stats.at("picks_lsh"), 2 * 2048);
  // Anchors (positions < A) survive every block.
  const auto& pos = cache.held_positions();
  for (int32_t i = 0; i < 1024; ++i) ASSERT_EQ(pos[i], i);
  ExpectStrictlyIncreasing(pos);
  EXPECT_LE(cache.kept_after_prefill(), 4096);
}

// §9 test 8: one block of 1024, B 400 (A = W = 100, G = 200), 824 candidates.
TEST(LaserKvCache, HybridSplitIsDisjointAndSized) {
  const KvGeometry g = LaserGeometry(2, 3, 1);
  struct Case { double rho; const char* lsh_mode; int64_t exact, lsh; };
  for (const Case& k : {Case{0.75, "MAGICPIG_BASELINE", 150, 50}, Case{0.75, "FREQUENCY_RANK", 150, 50},
                        Case{1.0, "MAGICPIG_BASELINE", 200, 0}, Case{0.0, "MAGICPIG_BASELINE", 0, 200},
                        Case{0.0, "FREQUENCY_RANK", 0, 200}}) {
    LaserKvSequenceCache cache(g, Config({{"budget", int64_t{400}}, {"query_len", int64_t{8}},
                                          {"block_size", int64_t{1024}}, {"hybrid_ratio", k.rho},
                                          {"lsh_mode", std::string(k.lsh_mode)}}), 1032);
    ASSERT_TRUE(DriveLaser(cache, g, 1032, 0).ok());
    const CacheReport r = cache.Report();
    EXPECT_EQ(r.stats.at("picks_exact"), k.exact) << k.rho << k.lsh_mode;
    EXPECT_EQ(r.stats.at("picks_lsh"), k.lsh) << k.rho << k.lsh_mode;
    // Disjoint: 100 anchors + 200 picks + 100 local, no position twice.
    EXPECT_EQ(cache.kept_after_prefill(), 400);
    ExpectStrictlyIncreasing(cache.held_positions());
  }
  // Fewer candidates than G: all of them (total = min(G, #candidates)).
  LaserKvSequenceCache few(g, Config({{"budget", int64_t{400}}, {"query_len", int64_t{8}}, {"block_size", int64_t{300}}}),
                           308);
  ASSERT_TRUE(DriveLaser(few, g, 308, 0).ok());
  EXPECT_EQ(few.Report().stats.at("picks_exact") + few.Report().stats.at("picks_lsh"), 100);
  EXPECT_EQ(few.kept_after_prefill(), 300);
}

// §9 test 9: kept positions are original and increasing; every layer holds
// the rows fed at those positions (one index set); the query sits at S..,
// decode at S+q..
TEST(LaserKvCache, EveryLayerHoldsTheSameOriginalPositions) {
  const KvGeometry g = LaserGeometry(3, 4, 2);
  const int64_t q = 6, S = 700, gen = 3;
  LaserKvSequenceCache cache(g, Config({{"budget", int64_t{200}}, {"query_len", q}, {"block_size", int64_t{256}}}),
                             S + q + gen);
  ASSERT_TRUE(DriveLaser(cache, g, S + q, gen).ok());
  const auto& pos = cache.held_positions();
  const int64_t kept = cache.kept_after_prefill();
  ASSERT_EQ(static_cast<int64_t>(pos.size()), kept + q + gen);
  ExpectStrictlyIncreasing(pos);
  for (int64_t j = 0; j < q; ++j) EXPECT_EQ(pos[kept + j], S + j);
  EXPECT_EQ(pos[kept + q], S + q);  // the first decode position
  std::vector<int64_t> p64(pos.begin(), pos.end());
  for (int64_t l = 0; l < g.n_layers; ++l) {
    EXPECT_TRUE(at::equal(cache.layer_keys(l), testing::SynthRows(l, p64, g.n_kv_heads, g.head_dim, 2.0))) << l;
    EXPECT_TRUE(at::equal(cache.layer_values(l), testing::SynthRows(l, p64, g.n_kv_heads, g.head_dim, 3.0))) << l;
  }
  const CacheReport r = cache.Report();
  ASSERT_EQ(r.layers.size(), 3u);
  for (const auto& lr : r.layers) {
    EXPECT_EQ(lr.tokens_held, r.tokens_held);
    EXPECT_EQ(lr.detail, "shared index set");
  }
}

// §9 test 11: same seed -> same kept set; exact-only ignores the seed; decode
// appends exactly one token per step and never recompresses.
TEST(LaserKvCache, DeterministicAndDecodeNeverRecompresses) {
  const KvGeometry g = LaserGeometry(2, 2, 1);
  auto run = [&](std::map<std::string, KnobValue> knobs, int64_t gen) {
    knobs.emplace("budget", int64_t{160});
    knobs.emplace("query_len", int64_t{5});
    knobs.emplace("block_size", int64_t{200});
    LaserKvSequenceCache cache(g, Config(knobs), 605 + gen);
    std::vector<int64_t> held_per_decode;
    EXPECT_TRUE(DriveLaser(cache, g, 605, gen, [&](const SeqStep& s) {
      if (!s.is_prompt) held_per_decode.push_back(static_cast<int64_t>(cache.held_positions().size()));
    }).ok());
    for (size_t i = 1; i < held_per_decode.size(); ++i) EXPECT_EQ(held_per_decode[i], held_per_decode[i - 1] + 1);
    EXPECT_EQ(cache.Report().stats.at("blocks"), 3);
    return cache.held_positions();
  };
  const auto a = run({{"hybrid_ratio", 0.5}}, 5);
  EXPECT_EQ(a, run({{"hybrid_ratio", 0.5}}, 5));
  const auto other = run({{"hybrid_ratio", 0.5}, {"lsh_seed", int64_t{12345}}}, 5);
  EXPECT_EQ(a.size(), other.size());
  EXPECT_EQ(run({{"method", std::string("EXACT")}}, 2), run({{"method", std::string("EXACT")}, {"lsh_seed", int64_t{7}}}, 2));
}

// Issue #12 acceptance, at the eval's contexts (2K, 4K, 8K; r 0.25, b 1024,
// an 18-token question): recursive holds <= B after every block, so after
// prefill too; accumulate grows by G a full block and by
// G_N = floor(G * b_N / b) in the short last one (LaserBlockBudget), to
// exactly min(A, S) + (N-1)*G + G_N + W <= r*S (every block has >= G
// candidates here), and the report says so (kept_after_prefill,
// kept_fraction, tokens_held = kept + q + new).
TEST(LaserKvCache, EvalContextsRecursiveWithinBudgetAccumulateGrowthReported) {
  const KvGeometry g = LaserGeometry(2, 3, 1);
  const int64_t q = 18, gen = 3;
  for (int64_t P : {2048, 4096, 8000}) {
    for (const char* mode : {"RECURSIVE", "ACCUMULATE"}) {
      LaserKvSequenceCache cache(g, Config({{"compression_ratio", 0.25}, {"block_size", int64_t{1024}},
                                            {"query_len", q}, {"compression_mode", std::string(mode)}}),
                                 P + gen);
      std::vector<int64_t> held;
      ASSERT_TRUE(DriveLaser(cache, g, P, gen, [&](const SeqStep& s) {
        if (s.n_probe > 0) held.push_back(static_cast<int64_t>(cache.held_positions().size() +
                                                               cache.tail_positions().size()));
      }).ok()) << P << mode;
      const LaserBudget& b = *cache.budget();
      const int64_t S = P - q;
      ASSERT_EQ(b.S, S);
      ASSERT_EQ(static_cast<int64_t>(held.size()), b.blocks);
      const CacheReport r = cache.Report();
      const int64_t kept = cache.kept_after_prefill();
      if (std::string(mode) == "RECURSIVE") {
        EXPECT_EQ(b.B, static_cast<int64_t>(0.25 * static_cast<double>(S))) << P;
        for (size_t i = 0; i < held.size(); ++i) EXPECT_LE(held[i], b.B) << P << " block " << i;
        EXPECT_LE(kept, b.B) << P;
        EXPECT_EQ(kept, b.B) << P << ": every block has enough candidates to fill the budget";
      } else {
        for (size_t i = 0; i + 1 < held.size(); ++i) {
          EXPECT_EQ(held[i], std::min(b.A, S) + static_cast<int64_t>(i + 1) * b.G + b.W) << P << " block " << i;
        }
        const int64_t last_len = S - (b.blocks - 1) * 1024;
        ASSERT_LT(last_len, 1024) << P << ": the eval's contexts end in a short block";
        const int64_t g_last = b.G * last_len / 1024;
        EXPECT_EQ(kept, std::min(b.A, S) + (b.blocks - 1) * b.G + g_last + b.W) << P;
        EXPECT_GT(kept, b.B) << P << ": accumulate grows past B";
        EXPECT_LE(static_cast<double>(kept), 0.25 * static_cast<double>(S) + 2) << P << ": r*S as §4.1 intends, up to floors";
      }
      EXPECT_EQ(r.stats.at("kept_after_prefill"), kept) << P << mode;
      EXPECT_DOUBLE_EQ(r.stats.at("kept_fraction"), static_cast<double>(kept) / static_cast<double>(S));
      EXPECT_EQ(r.tokens_held, kept + q + gen) << P << mode;
      EXPECT_EQ(r.tokens_seen, P + gen) << P << mode;
      ExpectStrictlyIncreasing(cache.held_positions());
    }
  }
}

TEST(LaserKvCache, RatioBudgetWithNoGlobalTokensRunsDense) {
  const KvGeometry g = LaserGeometry();
  LaserKvSequenceCache cache(g, Config({{"compression_ratio", 0.01}, {"block_size", int64_t{16}}}), 40);
  EXPECT_FALSE(cache.NextPrefill(0, 38).has_value());
  ASSERT_TRUE(DriveLaser(cache, g, 38, 2).ok());
  const CacheReport r = cache.Report();
  EXPECT_EQ(r.stats.at("dense_fallback"), 1);
  EXPECT_EQ(r.tokens_held, 40);
  ExpectStrictlyIncreasing(cache.held_positions());
}

TEST(LaserKvCache, PredictBytesCoversTheMeasuredPeak) {
  const KvGeometry g = LaserGeometry(2, 2, 1);
  LaserKvStrategy strategy(g);
  for (const char* mode : {"ACCUMULATE", "RECURSIVE"}) {
    StrategyConfig sc;
    sc.strategy = "laser_kv";
    sc.knobs = {{"compression_ratio", 0.5}, {"block_size", int64_t{256}}, {"query_len", int64_t{8}},
                {"compression_mode", std::string(mode)}};
    sc.max_tokens = 1000 + 20;
    ASSERT_TRUE(strategy.Validate(sc).ok());
    auto cache = strategy.Open(sc);
    ASSERT_TRUE(cache.ok());
    auto* lc = static_cast<LaserKvSequenceCache*>(cache->get());
    ASSERT_TRUE(DriveLaser(*lc, g, 1000, 20).ok());
    const CacheReport r = lc->Report();
    EXPECT_LE(r.peak_kv_bytes, strategy.PredictBytes(sc, 1000, 20)) << mode;
    EXPECT_LT(r.tokens_held, r.tokens_seen) << mode;  // (the ratio is vs 16-bit dense; CPU holds fp32)
    EXPECT_EQ(r.strategy, "laser_kv");
    for (const char* stat : {"mode", "B", "A", "W", "G", "G_p", "G_s", "blocks", "S", "q", "kept_after_prefill",
                             "kept_fraction", "picks_exact", "picks_lsh", "tail_candidates", "tail_reselected",
                             "history_candidates", "lsh_survivors_total", "lsh_fallback_picks", "num_bits",
                             "num_tables", "score_window_tokens_total", "scoring_ms", "lsh_ms", "compaction_ms"}) {
      EXPECT_TRUE(r.stats.count(stat)) << stat;
    }
  }
  // Accumulate §6.11 at S = 12288, b 4096, B 4096, q 64, 100 new: (1024 + 3*2048 + 1024 + 64 + 100) tokens at least.
  StrategyConfig sc;
  sc.strategy = "laser_kv";
  sc.knobs = {{"budget", int64_t{4096}}};
  EXPECT_GE(strategy.PredictBytes(sc, 12288 + 64, 100), (8192 + 64 + 100) * strategy.BytesPerToken());
}

}  // namespace
}  // namespace kvstream
