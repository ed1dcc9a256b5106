// AKV tier management (akv.md §4 steps 1, 3-6, §7): append new rows, update
// importance scores, select rows to move, and move them. All counts live in
// tiers.counts (device for launchers), so the whole step can be captured in a
// CUDA graph: launch shapes come from capacities, live sizes from memory.
//
// Per layer, per step:   AkvAppend (step 1) -> attention -> AkvScoreUpdate (step 3)
// EndStep, all layers:   AkvSelect (lists for steps 4-6) -> AkvMigrate (moves, counts)
// (The warm->cold re-quantization and D2H copy read the AkvColdStage rows that
// AkvMigrate fills; they are not part of this family yet.)
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_layout.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_AKV_HAS_LAUNCHER 1
#endif

namespace kvstream {

// ---- step 1: append n new post-RoPE rows to hot -----------------------------------
// Rows go to hot slots n_hot .. n_hot+n-1 with s = 0, then n_hot += n. Rows
// that do not fit in C_hot are dropped and counted (kAkvTotAppendOverflow).
struct AkvAppendParams {
  AkvLayout layout;
  AkvTiers tiers;
  int layer = 0;
  const void* k = nullptr;        // [n, Hkv, D] dtype, row r at r * row_stride
  const void* v = nullptr;        // [n, Hkv, D] dtype, row r at r * row_stride
  const int32_t* pos = nullptr;   // [n] absolute positions (P .. P+n-1)
  int64_t row_stride = 0;         // elements; 0 = Hkv*D
  int rows = 0;                   // n
  // Batched decode (akv_attention.h): row r is sequence r's one new row and
  // goes to *batch->seq[r] (its layer's tiers, its position, its C_hot);
  // tiers, layer and pos above unused.
  const AkvAttnBatch* batch = nullptr;
};

// ---- step 3: scores ------------------------------------------------------------------
// IMPORTANCE: a_j = (1/Hq) sum_h exp(z_{M-1,j,h} - lse_{M-1,h}) over every hot
//   and warm row j; s_j <- decay*s_j + a_j (hot), w_j <- decay*w_j + a_j and
//   warm_a_j = a_j (warm).
// HYBRID (akv.md §4 step 3): u_j = decay*s_j + (1/Hq) sum_{i<M} sum_h p_ijh
//   (p = 0 where pos_j > q_pos_i), then s_j = attention_weight*u_j /
//   max(max_k u_k, 1e-10) + recency_weight*rank(pos_j)/(V-1) (1 if V = 1),
//   over V = n_hot + n_warm rows; warm rows use w as their s; warm_a_j gets
//   the last row's share as in IMPORTANCE.
// FIFO: nothing to do (the launcher returns at once).
struct AkvScoreParams {
  AkvLayout layout;
  AkvTiers tiers;                 // hot_k, warm codes/scales, pos, hot_score, warm_score, warm_a, counts
  int layer = 0;
  const void* q = nullptr;        // [M, Hq, D] dtype (same q as the attention)
  const int32_t* q_pos = nullptr; // [M]
  const float* lse = nullptr;     // [M, Hq] natural-log lse from the attention
  int64_t q_stride_m = 0;         // elements; 0 = Hq*D
  int64_t q_stride_h = 0;         // elements; 0 = D
  int num_rows = 0;               // M
  int num_heads = 0;              // Hq
  float scale = 0.0f;             // the attention's softmax scale
  AkvScoring mode = AkvScoring::kImportance;
  float decay = 0.3f;             // importance_decay (lambda)
  float attention_weight = 0.7f;  // HYBRID
  float recency_weight = 0.3f;    // HYBRID
  uint32_t* workspace = nullptr;  // HYBRID on CUDA: AkvScoreWorkspaceWords(max_positions) words
  int max_positions = 0;          // HYBRID on CUDA: every stored pos is < this
  // Optional (both or neither; not written under FIFO): the last query row
  // q[M-1] packed [Hq, D] dtype and its lse[M-1] [Hq] are also copied here,
  // by CTA 0 of the update (the cold scan's query, kept without a copy node
  // of its own in the decode graph; engine akv_cold_scan.h).
  void* q_keep = nullptr;
  float* lse_keep = nullptr;
};
size_t AkvScoreWorkspaceWords(int max_positions);
const char* AkvScoreValidate(const AkvScoreParams& p);

// ---- steps 4-6: selection ----------------------------------------------------------
// Per layer, on the state after step 3 (akv.md §4; lists sorted by index):
//  4. promote: warm rows with warm_a > threshold, at most cap (AkvPromoteCap),
//     largest a first (ties: larger pos); cap-dropped candidates are counted.
//  5. demote: over the virtual hot set (hot rows + promoted rows with s = 1.0),
//     when its size V_h > hot_budget + batch - 1: nd = V_h - hot_budget rows
//     with smallest s (FIFO: pos; ties: smaller pos) among rows that are not
//     among the R newest (AkvRecentProtected) and not sinks (pos <
//     initial_tokens_protected). Fewer eligible: all of them, the rest counted
//     as hot overflow. kvstream choice: a promoted row picked for demotion
//     cancels its promotion (it stays warm, untouched).
//  6. warm->cold: over the virtual warm set (warm rows not promoted + demoted
//     rows with w = s), when its size V_w > warm_budget + batch - 1 (or > 0
//     when warm_budget = 0): V_w - warm_budget rows with smallest w (FIFO:
//     pos; ties: smaller pos).
// Capacity guards (never binding when C_hot / C_warm follow akv.md §3): at
// most C_hot - n_hot promotions, at most C_warm - n_warm demotions (the rest
// counted as hot overflow).
// Writes the lists and counts slots kAkvNDemote/NPromote/NCold, the step and
// cumulative overflow/capped counters and kAkvTotDemotionEvents. The lists and
// these slots stay valid until the next select (migrate reads them; call
// migrate exactly once per select).
struct AkvSelectParams {
  AkvLayout layout;
  AkvTiers tiers;
  AkvLists lists;
  AkvPolicy policy;
  int num_layers = 1;  // L
};
const char* AkvSelectValidate(const AkvSelectParams& p);

// ---- steps 4-6: migration ------------------------------------------------------------
// Per layer, from the lists of AkvSelect:
//  - demoted hot rows are quantized (b bits) into warm slots n_warm + k, w = s, a = 0;
//  - promoted warm rows are dequantized into hot slots n_hot + k, s = 1.0
//    (values stay the quantized ones);
//  - cold-listed rows are copied (codes as they are) into `stage` if given;
//  - hot drops demoted rows and warm drops promoted + cold rows, both by
//    stable in-place compaction;
//  - n_hot, n_warm and the cumulative counters are updated; saturated
//    scale/zero groups are added to kAkvTotQuantSaturations.
struct AkvMigrateParams {
  AkvLayout layout;
  AkvTiers tiers;
  AkvLists lists;      // read only
  AkvColdStage stage;  // optional (all null = evict)
  int num_layers = 1;  // L
};
const char* AkvMigrateValidate(const AkvMigrateParams& p);
const char* AkvAppendValidate(const AkvAppendParams& p);

// ---- step 7 (cold scan, opt-in): cold rows taken back to warm -------------------------
// Per layer l, the first rows[l] rows of `stage` (warm_bits codes the host
// re-quantized from cold, best first) go to warm slots n_warm.., as many as
// keep n_warm <= min(warm_limit, C_warm) (the device's n_warm: the host
// picked them against counts a step old); each enters with w = warm_a = its
// stage score (a_j of the scan). n_warm and kAkvTotColdTaken grow by the rows
// taken, so the host drops exactly those rows from cold (engine akv_cold_scan.h).
struct AkvColdAppendParams {
  AkvLayout layout;
  AkvTiers tiers;                 // warm arrays and counts
  AkvColdStage stage;             // [L, S, ...] warm-format rows, score = a_j; S = stage.Rows(layout)
  const int32_t* rows = nullptr;  // [L] rows staged per layer (clamped to [0, S])
  int warm_limit = 0;             // warm_budget + eviction_batch_size - 1: warm's size after a step
  int num_layers = 1;             // L
};
const char* AkvColdAppendValidate(const AkvColdAppendParams& p);
// Rows layer l takes of `staged`, given its n_warm (kernel and twin).
KV_HD int AkvColdTakeRows(const AkvColdAppendParams& p, int staged, int n_warm) {
  const int S = p.stage.Rows(p.layout);
  const int limit = p.warm_limit < p.layout.warm_capacity ? p.warm_limit : p.layout.warm_capacity;
  int take = staged < S ? staged : S;
  if (take > limit - n_warm) take = limit - n_warm;
  return take > 0 ? take : 0;
}

// ---- CPU twins (host pointers; false and nothing written if invalid) ----------------
bool AkvAppendRef(const AkvAppendParams& p);
bool AkvScoreUpdateRef(const AkvScoreParams& p);  // fp64 math
bool AkvSelectRef(const AkvSelectParams& p);      // std::stable_sort on (key, pos)
bool AkvMigrateRef(const AkvMigrateParams& p);
bool AkvColdAppendRef(const AkvColdAppendParams& p);

// ---- CUDA launchers (bf16/fp32 hot tier, see AkvCudaSupports) -------------------------
#if defined(KVSTREAM_AKV_HAS_LAUNCHER)
cudaError_t LaunchAkvAppend(const AkvAppendParams& p, cudaStream_t stream);
cudaError_t LaunchAkvScoreUpdate(const AkvScoreParams& p, cudaStream_t stream);
// One CTA per layer: radix selection on the 64-bit keys of akv_layout.h.
cudaError_t LaunchAkvSelect(const AkvSelectParams& p, cudaStream_t stream);
// One CTA per (layer, KV head, K|V) then a one-CTA counter commit.
cudaError_t LaunchAkvMigrate(const AkvMigrateParams& p, cudaStream_t stream);
// One CTA per layer (copies and one counter update; the host sized the stage).
cudaError_t LaunchAkvColdAppend(const AkvColdAppendParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
