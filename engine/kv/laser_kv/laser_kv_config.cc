#include "engine/kv/laser_kv/laser_kv_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/kv/knob_reader.h"

namespace kvstream {
namespace {

LaserSelector SelectorOf(const std::string& s) {
  return s == "LSH" ? LaserSelector::kLsh : LaserSelector::kExact;
}

// G of a budget B split with divisor n (§4.1).
int64_t GlobalOf(int64_t B, int64_t n) { return B - 2 * (B / n); }

// Routes g global tokens to the selectors (§4.1 hybrid split, §5 method).
void SplitGlobal(const LaserKvConfig& c, int64_t g, LaserBudget* b) {
  b->G_s = 0;
  b->second_count = 0;
  switch (c.method) {
    case LaserMethod::kExact:
      b->first = LaserSelector::kExact;
      b->first_count = g;
      b->G_p = g;
      break;
    case LaserMethod::kLsh:
      b->first = LaserSelector::kLsh;
      b->first_count = g;
      b->G_p = g;
      break;
    case LaserMethod::kHybrid:
      b->G_p = static_cast<int64_t>(std::floor(static_cast<double>(g) * c.hybrid_ratio));
      b->G_s = g - b->G_p;
      b->first = c.hybrid_primary;
      b->second = c.hybrid_secondary;
      b->first_count = b->G_p;
      b->second_count = b->G_s;
      break;
  }
}

}  // namespace

absl::StatusOr<LaserKvConfig> ParseLaserKvConfig(const StrategyConfig& config, int64_t context_length) {
  KnobReader r(config, "laser_kv");
  LaserKvConfig c;
  const int64_t ctx = std::max<int64_t>(context_length, 1);
  const std::string mode =
      r.Enum("compression_mode", "ACCUMULATE", "LASER_KV_COMPRESSION_MODE_", {"ACCUMULATE", "RECURSIVE"});
  c.mode = mode == "RECURSIVE" ? LaserMode::kRecursive : LaserMode::kAccumulate;
  const std::string method = r.Enum("method", "HYBRID", "LASER_KV_METHOD_", {"HYBRID", "EXACT", "LSH"});
  c.method = method == "EXACT" ? LaserMethod::kExact : method == "LSH" ? LaserMethod::kLsh : LaserMethod::kHybrid;
  c.budget = r.Int("budget", 0, 0, INT32_MAX);
  c.compression_ratio = r.Real("compression_ratio", 0.75, 0.0, true, 1.0, false);
  c.protection_divisor = r.Int("protection_divisor", 4, 2, INT32_MAX);
  c.block_size = r.Int("block_size", 4096, 1, ctx);
  c.hybrid_primary = SelectorOf(r.Enum("hybrid_primary", "EXACT", "LASER_KV_SELECTOR_", {"EXACT", "LSH"}));
  c.hybrid_secondary = SelectorOf(r.Enum("hybrid_secondary", "LSH", "LASER_KV_SELECTOR_", {"EXACT", "LSH"}));
  c.hybrid_ratio = r.Real("hybrid_ratio", 0.75, 0.0, false, 1.0, false);
  const std::string lsh =
      r.Enum("lsh_mode", "MAGICPIG_BASELINE", "LASER_KV_LSH_MODE_", {"MAGICPIG_BASELINE", "FREQUENCY_RANK"});
  c.lsh_mode = lsh == "FREQUENCY_RANK" ? LaserLshMode::kFrequencyRank : LaserLshMode::kMagicpigBaseline;
  c.num_bits = r.Int("num_bits", 10, 1, 16);
  c.num_tables = r.Int("num_tables", 8, 2, 128);
  const std::string tb = r.Enum("tie_break", "L2", "LASER_KV_TIE_BREAK_",
                                {"L2", "MAX_SIM", "MAHALANOBIS", "PARTITIONED_CENTROID", "NONE"});
  c.tie_break = tb == "MAX_SIM"                ? LaserTieBreak::kMaxSim
                : tb == "MAHALANOBIS"          ? LaserTieBreak::kMahalanobis
                : tb == "PARTITIONED_CENTROID" ? LaserTieBreak::kPartitionedCentroid
                : tb == "NONE"                 ? LaserTieBreak::kNone
                                               : LaserTieBreak::kL2;
  c.boundary_smoothing = r.Bool("boundary_smoothing", true);
  c.query_len = r.Int("query_len", 64, 1, ctx);
  c.lsh_seed = static_cast<uint64_t>(r.Int("lsh_seed", static_cast<int64_t>(0x4C41534552ll), 0, INT64_MAX));

  // Cross-field rules (§5, §6.8, README.md decisions).
  if (c.num_bits * c.num_tables > 1024) {
    r.Fail(absl::StrCat(r.Field("num_tables"), " * num_bits must be <= 1024 (got ", c.num_tables, " * ",
                        c.num_bits, " = ", c.num_tables * c.num_bits, ")"));
  }
  if (c.budget > 0 && GlobalOf(c.budget, c.protection_divisor) <= 0) {
    r.Fail(absl::StrCat(r.Field("budget"), " must be 0 or leave G = budget - 2*floor(budget/protection_divisor) > 0 "
                        "(got budget ", c.budget, ", protection_divisor ", c.protection_divisor, ": G = ",
                        GlobalOf(c.budget, c.protection_divisor), ")"));
  }
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return c;
}

int64_t LaserBudgetTokens(const LaserKvConfig& c, int64_t S) {
  if (c.budget > 0) return c.budget;
  const double r = c.compression_ratio;
  if (c.mode == LaserMode::kRecursive) return static_cast<int64_t>(std::floor(r * static_cast<double>(S)));
  // §6.10 in one fraction: r*S / ((2b + S(n-2)) / (n b)). The 1e-12 guards a
  // product that is an exact integer in real numbers from landing just below.
  const double n = static_cast<double>(c.protection_divisor), b = static_cast<double>(c.block_size);
  const double s = static_cast<double>(S);
  const double x = r * s * n * b / (2.0 * b + s * (n - 2.0));
  return static_cast<int64_t>(std::floor(x * (1.0 + 1e-12)));
}

LaserBudget ComputeLaserBudget(const LaserKvConfig& c, int64_t prompt_tokens) {
  LaserBudget b;
  const int64_t P = prompt_tokens;
  if (P < 2) {  // §6.1: no room for a context and a query token
    b.dense = true;
    b.S = P;
    return b;
  }
  b.q = std::min<int64_t>(c.query_len, P - 1);
  b.S = P - b.q;
  b.B = LaserBudgetTokens(c, b.S);
  const int64_t n = c.protection_divisor;
  b.A = b.B / n;
  b.W = b.B / n;
  b.G = b.B - 2 * (b.B / n);
  b.blocks = (b.S + c.block_size - 1) / c.block_size;
  if (b.G <= 0) {  // only a ratio-derived budget gets here (parse rejects explicit ones)
    b.dense = true;
    return b;
  }
  SplitGlobal(c, b.G, &b);
  return b;
}

LaserBudget LaserBlockBudget(const LaserKvConfig& c, const LaserBudget& b, int64_t block_len) {
  if (b.dense || c.budget > 0 || c.mode != LaserMode::kAccumulate || block_len >= c.block_size) return b;
  LaserBudget out = b;
  SplitGlobal(c, b.G * std::max<int64_t>(block_len, 0) / c.block_size, &out);
  return out;
}

LaserBlockSlots LaserSlots(int64_t block_start, int64_t block_len, int64_t A, int64_t W) {
  LaserBlockSlots s;
  s.start = block_start;
  s.len = block_len;
  s.anchors_end = block_start < A ? std::min(A - block_start, block_len) : 0;
  s.local_begin = std::max(s.anchors_end, block_len - W);
  return s;
}

}  // namespace kvstream
