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
// sizes hold), largest a_j first (ties: larger pos); they are re-quantized to
// warm_bits and enter warm through akv_cold_append (kernels/akv) with
// w_j = a_j, and the next demotion weighs them against the other warm rows.
// kvstream choices (strategies/README.md: "Cold scan window: your choice"):
// the window is kAkvColdScanWindowRows rows per layer, round robin over the
// layer's cold rows (a long request's whole cold tier is covered every
// ceil(rows / window) scans); scores come from the score twin run over the
// window staged as a warm tier of cold_bits codes, so they are the kernels'
// numbers.
// CPU servers scan at the step's end with the twins. On CUDA servers
// (akv_cold_scan_cuda.cc) the scan is a pipeline with one stage per EndStep,
// one scan in flight, each stage's work a step old by the time it is used
// (no step waits on a transfer it just issued):
//   1. the step's last query (each layer's score update keeps it on the
//      device, akv_manage.h q_keep) is frozen; a thread gathers the window's
//      cold key codes into pinned memory
//   2. once gathered, they go H2D on the scan's copy stream
//   3. the score kernel rates the window; the shares go D2H on the copy stream
//   4. the host picks and re-quantizes the picks; they go H2D on the copy
//      stream
//   5. akv_cold_append puts them in warm against the device's n_warm
//   6. the host reads how many it took (lagged counters) and drops exactly
//      those from cold.
// A scan thus starts every max(cold_scan_interval, 5) steps (4 when it picks
// nothing; stage 6 of one scan and stage 1 of the next share a step). A
// layer whose warm tier has no room keeps its window for the next scan.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv/akv/akv_cold.h"
#include "kernels/akv/akv_manage.h"

namespace kvstream {

inline constexpr int kAkvColdScanWindowRows = 1024;

// The step's last query of one layer, as the scan reads it.
struct AkvLastQuery {
  const void* q = nullptr;     // [Hq, D] dtype (the hot tier's, as the score update keeps it)
  const float* lse = nullptr;  // [Hq] natural log, over hot + warm
  int32_t pos = 0;             // its position (every cold row is older)
  int num_heads = 0;           // Hq
  KvDType dtype = KvDType::kFp32;
};

struct AkvColdPicks {
  std::vector<int64_t> rows;  // cold row indices, best first (a descending, ties: larger pos)
  std::vector<float> a;       // their shares, same order
};

// Score-update parameters that rate a window of cold rows (CPU twin and
// CUDA kernel alike): the window is a warm tier of cold_bits codes and
// capacity `rows` beside an empty one-slot hot tier (the update wants hot
// buffers; with n_hot = 0 it reads none), rated against one query row with
// IMPORTANCE and no decay, so warm_a = each row's share a_j. `window` gives
// the hot slot (hot_k, hot_pos, hot_score), the keys (warm_k, warm_k_scale,
// warm_k_zero, warm_pos), warm_score and warm_a outputs and counts (n_warm =
// the rows in the window); the values' pointers alias the keys' (never read).
// The caller sets layer, q, q_pos and lse.
AkvScoreParams AkvColdWindowScoreParams(const AkvLayout& warm, int cold_bits, int rows, KvDType dtype,
                                        int num_heads, AkvTiers window);

// Indices j < n with a[j] > threshold, best first (a descending, ties: larger
// pos), at most `cap` of them.
std::vector<int> AkvBestShares(const float* a, const int32_t* pos, int n, float threshold, int cap);

// Scores cold rows [first, first + n) of `layer` (cold_bits codes in the
// layout's geometry) and picks those above `threshold`, at most `cap`.
absl::StatusOr<AkvColdPicks> AkvPickColdRows(const AkvColdTier& cold, int layer, int64_t first, int n,
                                             const AkvLayout& warm, int cold_bits, const AkvLastQuery& q,
                                             float threshold, int cap);

// Copies the picks of `layer` out of cold, re-quantized from cold_bits to
// `warm`'s warm_bits, into stage rows [slot * S, slot * S + picks) (S =
// stage.Rows(warm)) in pick order, with score = a; returns saturated groups.
int AkvStageColdPicks(const AkvColdTier& cold, int layer, const AkvColdPicks& picks, const AkvLayout& warm,
                      int cold_bits, const AkvColdStage& stage, int slot);

// Drops the first `taken` picks (those akv_cold_append took) from cold.
void AkvDropTakenColdRows(AkvColdTier* cold, int layer, const AkvColdPicks& picks, int64_t taken);

}  // namespace kvstream
