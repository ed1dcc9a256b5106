// LaserKvConfig (laser_kv.md §5), the budget math (§4.1, §6.10) and the fixed
// slots (§4.3 step 1): §9 unit tests 1 (budget split), 2 (ratio to budget)
// and 3 (fixed slots) with the spec's exact numbers, plus every knob's range.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "engine/kv/laser_kv/laser_kv_config.h"

namespace kvstream {
namespace {

constexpr int64_t kCtx = 131072;

StrategyConfig Laser(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "laser_kv";
  c.knobs = std::move(knobs);
  return c;
}

LaserKvConfig Parse(std::map<std::string, KnobValue> knobs) {
  absl::StatusOr<LaserKvConfig> c = ParseLaserKvConfig(Laser(std::move(knobs)), kCtx);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : LaserKvConfig{};
}

void ExpectError(std::map<std::string, KnobValue> knobs, const std::vector<std::string>& needles) {
  absl::StatusOr<LaserKvConfig> c = ParseLaserKvConfig(Laser(knobs), kCtx);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& n : needles) EXPECT_NE(c.status().message().find(n), std::string::npos) << c.status() << " / " << n;
}

TEST(LaserKvConfig, UnsetKnobsTakeTheSpecDefaults) {
  const LaserKvConfig c = Parse({});
  EXPECT_EQ(c.mode, LaserMode::kAccumulate);
  EXPECT_EQ(c.method, LaserMethod::kHybrid);
  EXPECT_EQ(c.budget, 0);
  EXPECT_DOUBLE_EQ(c.compression_ratio, 0.75);
  EXPECT_EQ(c.protection_divisor, 4);
  EXPECT_EQ(c.block_size, 4096);
  EXPECT_EQ(c.hybrid_primary, LaserSelector::kExact);
  EXPECT_EQ(c.hybrid_secondary, LaserSelector::kLsh);
  EXPECT_DOUBLE_EQ(c.hybrid_ratio, 0.75);
  EXPECT_EQ(c.lsh_mode, LaserLshMode::kMagicpigBaseline);
  EXPECT_EQ(c.num_bits, 10);
  EXPECT_EQ(c.num_tables, 8);
  EXPECT_EQ(c.tie_break, LaserTieBreak::kL2);
  EXPECT_TRUE(c.boundary_smoothing);
  EXPECT_EQ(c.query_len, 64);
  EXPECT_EQ(c.lsh_seed, 0x4C41534552ull);
}

TEST(LaserKvConfig, EnumsAcceptFullAndShortNames) {
  const LaserKvConfig c = Parse({{"compression_mode", std::string("LASER_KV_COMPRESSION_MODE_RECURSIVE")},
                                 {"method", std::string("lsh")},
                                 {"hybrid_primary", std::string("LASER_KV_SELECTOR_LSH")},
                                 {"hybrid_secondary", std::string("EXACT")},
                                 {"lsh_mode", std::string("FREQUENCY_RANK")},
                                 {"tie_break", std::string("LASER_KV_TIE_BREAK_PARTITIONED_CENTROID")}});
  EXPECT_EQ(c.mode, LaserMode::kRecursive);
  EXPECT_EQ(c.method, LaserMethod::kLsh);
  EXPECT_EQ(c.hybrid_primary, LaserSelector::kLsh);
  EXPECT_EQ(c.hybrid_secondary, LaserSelector::kExact);
  EXPECT_EQ(c.lsh_mode, LaserLshMode::kFrequencyRank);
  EXPECT_EQ(c.tie_break, LaserTieBreak::kPartitionedCentroid);
  EXPECT_EQ(Parse({{"compression_mode", std::string("LASER_KV_COMPRESSION_MODE_UNSPECIFIED")}}).mode,
            LaserMode::kAccumulate);
}

TEST(LaserKvConfig, EveryRangeIsNamedInTheError) {
  const std::string f = "kv_compression.laser_kv.";
  ExpectError({{"compression_mode", std::string("SLIDING")}}, {f + "compression_mode"});
  ExpectError({{"method", std::string("RANDOM")}}, {f + "method"});
  ExpectError({{"budget", int64_t{-1}}}, {f + "budget", "[0, 2147483647]"});
  ExpectError({{"compression_ratio", 0.0}}, {f + "compression_ratio", "(0, 1]"});
  ExpectError({{"compression_ratio", 1.5}}, {f + "compression_ratio", "(0, 1]"});
  ExpectError({{"protection_divisor", int64_t{1}}}, {f + "protection_divisor", "[2, "});
  ExpectError({{"block_size", int64_t{0}}}, {f + "block_size", "[1, 131072]"});
  ExpectError({{"block_size", kCtx + 1}}, {f + "block_size", "[1, 131072]"});
  ExpectError({{"hybrid_primary", std::string("RANDOM")}}, {f + "hybrid_primary"});
  ExpectError({{"hybrid_secondary", std::string("RANDOM")}}, {f + "hybrid_secondary"});
  ExpectError({{"hybrid_ratio", 1.01}}, {f + "hybrid_ratio", "[0, 1]"});
  ExpectError({{"hybrid_ratio", -0.5}}, {f + "hybrid_ratio", "[0, 1]"});
  ExpectError({{"lsh_mode", std::string("X")}}, {f + "lsh_mode"});
  ExpectError({{"num_bits", int64_t{0}}}, {f + "num_bits", "[1, 16]"});
  ExpectError({{"num_bits", int64_t{17}}}, {f + "num_bits", "[1, 16]"});
  ExpectError({{"num_tables", int64_t{1}}}, {f + "num_tables", "[2, 128]"});  // §6.8: L = 1 rejected
  ExpectError({{"num_tables", int64_t{129}}}, {f + "num_tables", "[2, 128]"});
  ExpectError({{"num_tables", int64_t{128}}, {"num_bits", int64_t{9}}}, {f + "num_tables", "<= 1024"});
  ExpectError({{"tie_break", std::string("COSINE")}}, {f + "tie_break"});
  ExpectError({{"boundary_smoothing", int64_t{3}}}, {f + "boundary_smoothing"});
  ExpectError({{"query_len", int64_t{0}}}, {f + "query_len", "[1, 131072]"});
  ExpectError({{"lsh_seed", int64_t{-2}}}, {f + "lsh_seed"});
  ExpectError({{"no_such_knob", int64_t{1}}}, {"kv_compression.laser_kv", "no_such_knob"});
  // L * K = 1024 exactly is allowed.
  EXPECT_EQ(Parse({{"num_tables", int64_t{64}}, {"num_bits", int64_t{16}}}).num_tables, 64);
}

// §9 test 1.
TEST(LaserKvBudget, SplitsAnExplicitBudget) {
  const LaserKvConfig c = Parse({{"budget", int64_t{4096}}});
  const LaserBudget b = ComputeLaserBudget(c, 20000);
  EXPECT_FALSE(b.dense);
  EXPECT_EQ(b.B, 4096);
  EXPECT_EQ(b.A, 1024);
  EXPECT_EQ(b.W, 1024);
  EXPECT_EQ(b.G, 2048);
  ExpectError({{"budget", int64_t{4096}}, {"protection_divisor", int64_t{1}}}, {"protection_divisor"});
  ExpectError({{"budget", int64_t{4}}, {"protection_divisor", int64_t{2}}}, {"kv_compression.laser_kv.budget", "G = 0"});
  const LaserBudget b3 = ComputeLaserBudget(Parse({{"budget", int64_t{3}}, {"protection_divisor", int64_t{2}}}), 100);
  EXPECT_FALSE(b3.dense);
  EXPECT_EQ(b3.A, 1);
  EXPECT_EQ(b3.W, 1);
  EXPECT_EQ(b3.G, 1);
}

// §9 test 2 (b 4096): the prompt is S + q with the default q = 64.
TEST(LaserKvBudget, DerivesTheBudgetFromTheRatio) {
  struct Case { double r; int64_t S, B, A, W, G, Gp, Gs; };
  for (const Case& k : {Case{0.25, 16384, 1638, 409, 409, 820, 615, 205},
                        Case{0.125, 65536, 963, 240, 240, 483, 362, 121},
                        Case{0.75, 128000, 5953, 1488, 1488, 2977, 2232, 745}}) {
    const LaserKvConfig c = Parse({{"compression_ratio", k.r}});
    const LaserBudget b = ComputeLaserBudget(c, k.S + 64);
    EXPECT_EQ(b.S, k.S);
    EXPECT_EQ(b.q, 64);
    EXPECT_EQ(b.B, k.B) << k.r;
    EXPECT_EQ(b.A, k.A);
    EXPECT_EQ(b.W, k.W);
    EXPECT_EQ(b.G, k.G);
    EXPECT_EQ(b.G_p, k.Gp);
    EXPECT_EQ(b.G_s, k.Gs);
    EXPECT_EQ(b.blocks, (k.S + 4095) / 4096);
    // Recursive: B = floor(r * S).
    const LaserKvConfig rc = Parse({{"compression_ratio", k.r}, {"compression_mode", std::string("RECURSIVE")}});
    EXPECT_EQ(ComputeLaserBudget(rc, k.S + 64).B, static_cast<int64_t>(k.r * static_cast<double>(k.S)));
  }
  // §6.10 with n != 4 (n = 8, b 1024, S 4096, r 0.5): r*S / (2/8 + 4*(6/8)) = 2048 / 3.25 = 630.15.
  EXPECT_EQ(LaserBudgetTokens(Parse({{"compression_ratio", 0.5}, {"protection_divisor", int64_t{8}},
                                     {"block_size", int64_t{1024}}}), 4096), 630);
}

// LaserBlockBudget: a ratio-derived accumulate budget gives a short block
// G_i = floor(G * b_i / b), split like G; full blocks, explicit budgets and
// recursive mode keep the whole G.
TEST(LaserKvBudget, ShortLastBlockPicksItsShareOfG) {
  const LaserKvConfig c = Parse({{"compression_ratio", 0.25}, {"block_size", int64_t{1024}}});
  const LaserBudget b = ComputeLaserBudget(c, 1856 + 64);  // the eval's 2K ppl prompt: S 1856, N 2
  ASSERT_EQ(b.B, 329);
  ASSERT_EQ(b.G, 165);
  const LaserBudget full = LaserBlockBudget(c, b, 1024);
  EXPECT_EQ(full.first_count, b.first_count);
  EXPECT_EQ(full.second_count, b.second_count);
  const LaserBudget last = LaserBlockBudget(c, b, 832);
  EXPECT_EQ(last.first_count + last.second_count, 165 * 832 / 1024);  // 134
  EXPECT_EQ(last.first_count, 100);                                   // floor(134 * 0.75)
  EXPECT_EQ(last.second_count, 34);
  EXPECT_EQ(last.G, b.G);  // the split itself (and the report) is unchanged
  // A + W + (S/b)*G up to floors: 82 + 82 + 165 + 134 = 463 <= 0.25 * 1856 = 464.
  EXPECT_LE(b.A + b.W + b.G + last.first_count + last.second_count, 464);
  const LaserKvConfig explicit_b = Parse({{"budget", int64_t{400}}, {"block_size", int64_t{1024}}});
  EXPECT_EQ(LaserBlockBudget(explicit_b, ComputeLaserBudget(explicit_b, 1920), 832).first_count,
            ComputeLaserBudget(explicit_b, 1920).first_count);
  const LaserKvConfig rec = Parse({{"compression_ratio", 0.25}, {"block_size", int64_t{1024}},
                                   {"compression_mode", std::string("RECURSIVE")}});
  const LaserBudget rb = ComputeLaserBudget(rec, 1920);
  EXPECT_EQ(LaserBlockBudget(rec, rb, 832).first_count, rb.first_count);
  const LaserKvConfig exact = Parse({{"compression_ratio", 0.25}, {"block_size", int64_t{1024}},
                                     {"method", std::string("EXACT")}});
  const LaserBudget eb = LaserBlockBudget(exact, ComputeLaserBudget(exact, 1920), 832);
  EXPECT_EQ(eb.first_count, 134);
  EXPECT_EQ(eb.second_count, 0);
}

TEST(LaserKvBudget, ShortPromptsRunDense) {
  const LaserKvConfig c = Parse({});
  EXPECT_TRUE(ComputeLaserBudget(c, 1).dense);  // P < 2
  // P = 2: q = 1, S = 1, B = floor(0.75 * 4*4096 / (8192 + 2)) = 1 -> G = 1: runs.
  const LaserBudget two = ComputeLaserBudget(c, 2);
  EXPECT_EQ(two.q, 1);
  EXPECT_EQ(two.S, 1);
  EXPECT_FALSE(two.dense);
  // A ratio-derived B of 0 (r small, S small) gives G = 0: dense, not an error.
  const LaserBudget tiny = ComputeLaserBudget(Parse({{"compression_ratio", 0.01}}), 30);
  EXPECT_EQ(tiny.B, 0);
  EXPECT_TRUE(tiny.dense);
  // query_len is clamped to P - 1.
  EXPECT_EQ(ComputeLaserBudget(c, 10).q, 9);
}

TEST(LaserKvBudget, MethodsRouteTheGlobalTokens) {
  const LaserBudget ex = ComputeLaserBudget(Parse({{"budget", int64_t{400}}, {"method", std::string("EXACT")}}), 1000);
  EXPECT_EQ(ex.first, LaserSelector::kExact);
  EXPECT_EQ(ex.first_count, 200);
  EXPECT_EQ(ex.second_count, 0);
  const LaserBudget ls = ComputeLaserBudget(Parse({{"budget", int64_t{400}}, {"method", std::string("LSH")}}), 1000);
  EXPECT_EQ(ls.first, LaserSelector::kLsh);
  EXPECT_EQ(ls.first_count, 200);
  const LaserBudget hy = ComputeLaserBudget(Parse({{"budget", int64_t{400}}, {"hybrid_ratio", 0.0}}), 1000);
  EXPECT_EQ(hy.first_count, 0);
  EXPECT_EQ(hy.second_count, 200);
  EXPECT_EQ(hy.second, LaserSelector::kLsh);
}

// §9 test 3.
TEST(LaserKvSlots, AnchorsLocalAndMiddle) {
  const LaserBlockSlots s0 = LaserSlots(0, 4096, 1024, 1024);
  EXPECT_EQ(s0.anchors_end, 1024);
  EXPECT_EQ(s0.local_begin, 3072);
  const LaserBlockSlots s1 = LaserSlots(4096, 4096, 1024, 1024);  // s >= A: no anchors
  EXPECT_EQ(s1.anchors_end, 0);
  EXPECT_EQ(s1.local_begin, 3072);
  const LaserBlockSlots shrt = LaserSlots(8192, 700, 1024, 1024);  // shorter than W: all local
  EXPECT_EQ(shrt.anchors_end, 0);
  EXPECT_EQ(shrt.local_begin, 0);
  // b < A: anchors span blocks 0..2 of 512 with A = 1300.
  EXPECT_EQ(LaserSlots(0, 512, 1300, 100).anchors_end, 512);
  EXPECT_EQ(LaserSlots(512, 512, 1300, 100).anchors_end, 512);
  const LaserBlockSlots s2 = LaserSlots(1024, 512, 1300, 100);
  EXPECT_EQ(s2.anchors_end, 276);
  EXPECT_EQ(s2.local_begin, 412);
  EXPECT_EQ(LaserSlots(1536, 512, 1300, 100).anchors_end, 0);
  // Anchors win over local where they overlap: local starts after them.
  const LaserBlockSlots ov = LaserSlots(0, 512, 1300, 100);
  EXPECT_EQ(ov.local_begin, 512);
}

}  // namespace
}  // namespace kvstream
