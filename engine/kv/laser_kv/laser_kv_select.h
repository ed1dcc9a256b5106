// LASER-KV global-token selection of one block (laser_kv.md §4.3 steps 4-5,
// §6.8, §6.9): the hybrid split of G over the exact selector (window scores,
// K7) and the LSH selector (K2-K6, K7), each picking from what the one before
// it left, in candidate-list order. Host policy (survivors, fallbacks, the
// split) lives here; the per-candidate arithmetic runs in the kernels (CPU
// twins on CPU tensors, launchers on CUDA ones: laser_kv_ops.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/laser_kv/laser_kv_config.h"
#include "kernels/laser_kv/laser_kv.h"

namespace kvstream {

// One block's candidates and what the selectors read. Host vectors are in
// list order (§4.3 step 3), which is ascending position order.
struct LaserSelectInput {
  std::vector<int32_t> rows;  // [Nc] concatenated index into `last_layer` (C ++ T ++ block)
  std::vector<int32_t> win;   // [Nc] index into `scores` (the K1 window)
  std::vector<int32_t> pos;   // [Nc] original positions
  at::Tensor scores;          // [Wn] fp32 exact ranking scores: K1 sums, pooled by K1b (device)
  LaserSegment last_layer[kLaserMaxSegments];  // k of the last layer's C, T, block slices (device)
  at::Tensor probe_keys;      // [Hkv, q, D] the query tokens' last-layer keys (device, compute dtype)
  at::Tensor projection;      // [D, L*K] fp32 R (device)
  int num_kv_heads = 0;
  int head_dim = 0;
  KvDType dtype = KvDType::kFp32;
};

struct LaserPicks {
  std::vector<int32_t> exact;  // indices into the candidate list, ascending
  std::vector<int32_t> lsh;    // indices into the candidate list, ascending (disjoint from exact)
  int64_t lsh_survivors = 0;   // magicpig candidates with >= 2 collisions
  int64_t lsh_fallback = 0;    // LSH picks made by a fallback (no/too few survivors)
  double scoring_ms = 0, lsh_ms = 0;  // exact top-k time, LSH time
};

// Picks min(G, Nc) candidates: budget.first_count by budget.first, then
// budget.second_count by budget.second from the rest (§4.1 hybrid split).
absl::StatusOr<LaserPicks> LaserSelectGlobal(const LaserKvConfig& config, const LaserBudget& budget,
                                             const LaserSelectInput& in);

}  // namespace kvstream
