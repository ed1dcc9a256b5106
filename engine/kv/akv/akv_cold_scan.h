// AKV cold scan (akv.md §4 step 7, §6 "Cold tier"; opt-in, cold_scan_interval
// > 0): every interval steps, each managed layer scores a window of its cold
// rows against the step's last query and takes the ones it leans on back to
// warm, re-quantized to warm_bits (precision lost going cold is not
// recovered).
//   a_j = (1/Hq) sum_h exp(q_h . k^_j / sqrt(D) - lse_h)   (step 3's share, the
//         step's lse over hot + warm: cold rows were not in that softmax)
// Rows with a_j > promote_threshold move, at most the promotion cap
// (AkvConfig::PromoteCap) and as many as keep warm within warm_budget +
// eviction_batch_size - 1 (what a step may leave it at, so akv.md §3's tier
// sizes hold), largest a_j first (ties: larger pos); they enter warm with
// w_j = a_j, and the next demotion weighs them against the other warm rows.
// kvstream choices (strategies/README.md: "Cold scan window: your choice"):
// the window is kAkvColdScanWindowRows rows per layer, round robin over the
// layer's cold rows (a long request's whole cold tier is covered every
// ceil(rows / window) scans); scores come from the score twin run over the
// window staged as a warm tier of cold_bits codes, so they are the kernels'
// numbers. This version scans on CPU servers; a CUDA server refuses the knob.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/akv/akv_cold.h"
#include "kernels/akv/akv_layout.h"

namespace kvstream {

inline constexpr int kAkvColdScanWindowRows = 1024;

// The step's last query of one layer, as the scan reads it.
struct AkvLastQuery {
  const float* q = nullptr;    // [Hq, D] fp32
  const float* lse = nullptr;  // [Hq] natural log, over hot + warm
  int32_t pos = 0;             // its position (every cold row is older)
  int num_heads = 0;           // Hq
};

struct AkvColdPicks {
  std::vector<int64_t> rows;  // cold row indices, ascending
  std::vector<float> a;       // their shares, same order
};

// Scores cold rows [first, first + n) of `layer` (cold_bits codes in the
// layout's geometry) and picks those above `threshold`, at most `cap`.
absl::StatusOr<AkvColdPicks> AkvPickColdRows(const AkvColdTier& cold, int layer, int64_t first, int n,
                                             const AkvLayout& warm, int cold_bits, const AkvLastQuery& q,
                                             float threshold, int cap);

}  // namespace kvstream
