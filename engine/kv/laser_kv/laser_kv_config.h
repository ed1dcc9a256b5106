// LASER-KV knobs (design/strategies/laser_kv.md §5, with the decisions of
// strategies/README.md), the budget math (§4.1, §6.10) and the fixed slots of
// a block (§4.3 step 1).
//
// Decisions (README.md "LASER-KV", written here as the brief asks):
// * An explicit `budget` whose split gives G <= 0 is INVALID_ARGUMENT at
//   parse time; a budget derived from `compression_ratio` that gives G <= 0
//   (a short prompt) is not an error: the request runs dense and the report
//   says so (stat "dense_fallback" = 1).
// * num_tables = 1 is rejected (§6.8): U is then always 0 and no candidate
//   can collide twice. L * K <= 1024 bounds the packed bit rows (16 words).
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/kv/strategy_config.h"
#include "kernels/laser_kv/laser_select.h"

namespace kvstream {

enum class LaserMode : int32_t { kAccumulate = 1, kRecursive = 2 };
enum class LaserMethod : int32_t { kHybrid = 1, kExact = 2, kLsh = 3 };
enum class LaserSelector : int32_t { kExact = 1, kLsh = 2 };
enum class LaserLshMode : int32_t { kMagicpigBaseline = 1, kFrequencyRank = 2 };
// The tie-break enum is the kernels' (kernels/laser_kv/laser_select.h).

struct LaserKvConfig {
  LaserMode mode = LaserMode::kAccumulate;
  LaserMethod method = LaserMethod::kHybrid;
  int64_t budget = 0;  // 0 = from compression_ratio
  double compression_ratio = 0.75;
  int64_t protection_divisor = 4;
  int64_t block_size = 4096;
  LaserSelector hybrid_primary = LaserSelector::kExact;
  LaserSelector hybrid_secondary = LaserSelector::kLsh;
  double hybrid_ratio = 0.75;
  LaserLshMode lsh_mode = LaserLshMode::kMagicpigBaseline;
  int64_t num_bits = 10;    // K
  int64_t num_tables = 8;   // L
  LaserTieBreak tie_break = LaserTieBreak::kL2;
  bool boundary_smoothing = true;
  int64_t query_len = 64;
  uint64_t lsh_seed = 0x4C41534552ull;
};

// The per-request budget split (§4.1) once S, the context token count, is
// known. `dense` means LASER-KV does not run for this request (P < 2, §6.1,
// or a ratio-derived G <= 0).
struct LaserBudget {
  bool dense = false;
  int64_t S = 0;  // context tokens (P - q)
  int64_t q = 0;  // query tokens
  int64_t B = 0, A = 0, W = 0, G = 0;
  int64_t G_p = 0;  // to the primary selector (floor(G * rho))
  int64_t G_s = 0;  // to the secondary selector (G - G_p)
  // Selectors in the order they pick; count 0 means the selector is unused.
  LaserSelector first = LaserSelector::kExact, second = LaserSelector::kLsh;
  int64_t first_count = 0, second_count = 0;
  int64_t blocks = 0;  // N = ceil(S / b)
};

// Parses and validates `config` (strategy "laser_kv") for a model with
// `context_length` positions. INVALID_ARGUMENT names
// kv_compression.laser_kv.<field> and its allowed range.
absl::StatusOr<LaserKvConfig> ParseLaserKvConfig(const StrategyConfig& config, int64_t context_length);

// §4.1 / §6.10: B from `budget`, else from the ratio (accumulate:
// floor(r*S*n*b / (2b + S(n-2))), which is floor(r*S / (2/n + (S/b)(1-2/n)));
// recursive: floor(r*S)). Pure.
int64_t LaserBudgetTokens(const LaserKvConfig& c, int64_t S);

// The whole split for a prompt of P tokens (q = min(query_len, P - 1)).
LaserBudget ComputeLaserBudget(const LaserKvConfig& c, int64_t prompt_tokens);

// The selector counts of one block of `block_len` tokens: `b` itself, except
// for a ratio-derived budget in accumulate mode, where a block shorter than
// block_size (the last one) picks G_i = floor(G * b_i / b), split as G is.
// NOTE(kvstream): [kvstream choice, not upstream] §4.1's ratio formula
// solves A + W + (S/b)*G = r*S, counting the partial last block as b_i/b of
// a block, but upstream gives every block a full G, so a prompt that ends
// in a partial block keeps more than r*S (SmolLM2 eval at r 0.25, b 1024:
// 26.6% of S at 2K, 26.0% at 4K). Scaling the last block's G holds the kept
// context to about r*S, as the formula intends; B, A, W, G are unchanged.
LaserBudget LaserBlockBudget(const LaserKvConfig& c, const LaserBudget& b, int64_t block_len);

// §4.3 step 1: the fixed slots of block i, as [begin, end) indices within the
// block; middle = [anchors_end, local_begin).
struct LaserBlockSlots {
  int64_t start = 0;        // s_i, the block's first position
  int64_t len = 0;          // b_i
  int64_t anchors_end = 0;  // anchors = [0, anchors_end)
  int64_t local_begin = 0;  // local = [local_begin, len)
};
LaserBlockSlots LaserSlots(int64_t block_start, int64_t block_len, int64_t A, int64_t W);

}  // namespace kvstream
