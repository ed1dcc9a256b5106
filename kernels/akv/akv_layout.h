// AKV (adaptive three-tier KV cache, design/strategies/akv.md): tier buffers,
// device counters and policy knobs shared by every kernel of kernels/akv/.
//
// Legend (dimension letters used in every shape below)
//   L      layers of one launch (batched kernels: select, migrate); per-layer
//          kernels (append, attention, score) take a `layer` index instead
//   Hq     query heads;  Hkv  KV heads;  G = Hq / Hkv query heads per KV head
//   D      head dim (64 or 128)
//   b      warm code width in bits (2, 4, 8);  Cb = D*b/8 code bytes per (row, head)
//   g      effective group size = min(group_size, D) (32, 64 or 128, divides D)
//   Gn     groups per (row, head) = D / g
//   C_hot  hot rows per layer (capacity);  C_warm  warm rows per layer (capacity)
//   M      query rows of a step (1 = decode, n = prefill chunk)
//   n      rows of an append / quantize call
//
// Layouts (akv.md §3; one sequence; layer l of a stacked buffer starts at
// base + l * (its per-layer size), so [L, ...] tensors work for batched kernels
// and a single layer's slice works with layer = 0)
//   hot_k, hot_v        [L, C_hot, Hkv, D]  model dtype (bf16 on CUDA, fp32 on CPU)
//   hot_pos             [L, C_hot]  int32 absolute token position
//   hot_score (s)       [L, C_hot]  fp32 importance EMA
//   warm_k, warm_v      [L, C_warm, Hkv, Cb]  u8 codes, packed per akv.md §6 / README:
//                        b=4 element 2i low nibble, b=2 element 4i bits 1-0, b=8 raw
//   warm_{k,v}_scale    [L, C_warm, Hkv, Gn]  fp16 bits
//   warm_{k,v}_zero     [L, C_warm, Hkv, Gn]  fp16 bits (zero = rounded group min)
//   warm_pos            [L, C_warm]  int32
//   warm_score (w)      [L, C_warm]  fp32 warm-tier EMA (kvstream choice, akv.md §4 step 3)
//   warm_a              [L, C_warm]  fp32 last-query attention share a_j of this step
//   counts              [L, kAkvCountSlots] int32 on the DEVICE (CPU twins: host);
//                        kernels read n_hot/n_warm from here, so a captured CUDA graph
//                        replays correctly as the tiers change (host reads them lagged)
//
// Layout decisions
//   * Only rows [0, n_hot) / [0, n_warm) are live; slots past them are scratch.
//   * Tier rows are NOT sorted by position: new rows are appended at the tail,
//     removals compact stably (relative order of survivors kept). Nothing
//     needs sorted tiers: attention masks by pos, selection ties break on pos.
//   * Tier membership is per layer and shared by all KV heads (akv.md §3).
//   * Dequantized value x^ = code*scale + zero in fp32; code*scale is exact
//     (<= 8 + 11 significant bits), so FMA or not gives the same bits: codes,
//     scales, zeros and dequantized rows are bit-identical on GPU and CPU
//     (quantize, dequant, migrate). The GPU attention uses the algebraically
//     equal code-domain form (akv_attention_kernel.cuh), within rounding.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/host_device.h"
#include "kernels/common/kv_dtype.h"

namespace kvstream {

// ---- device counters: counts[l * kAkvCountSlots + slot] -----------------------
enum AkvCountSlot : int {
  kAkvNHot = 0,                // live hot rows
  kAkvNWarm = 1,               // live warm rows
  kAkvNDemote = 2,             // select -> migrate: entries of the demote list
  kAkvNPromote = 3,            // select -> migrate: entries of the promote list
  kAkvNCold = 4,               // select -> migrate: entries of the warm->cold list
  kAkvStepHotOverflow = 5,     // select: demotions wanted but not possible this step
  kAkvStepPromoteCapped = 6,   // select: candidates dropped by the cap this step
  kAkvTotDemoted = 7,          // cumulative hot->warm rows (migrate)
  kAkvTotPromoted = 8,         // cumulative warm->hot rows (migrate)
  kAkvTotCold = 9,             // cumulative rows that left warm (cold or evicted) (migrate)
  kAkvTotHotOverflow = 10,     // cumulative of slot 5 (select)
  kAkvTotPromoteCapped = 11,   // cumulative of slot 6 (select)
  kAkvTotDemotionEvents = 12,  // steps whose hot->warm trigger fired (select)
  kAkvTotQuantSaturations = 13,  // fp16 scale/zero clamped to +-65504 (migrate quantize)
  kAkvTotAppendOverflow = 14,  // appended rows dropped because C_hot was full (append)
  kAkvTotColdTaken = 15,       // cumulative cold rows a cold scan took back to warm (cold append)
  kAkvCountSlots = 16,         // padded
};

// ---- static shape of one sequence's tiers --------------------------------------
struct AkvLayout {
  int num_kv_heads = 0;   // Hkv
  int head_dim = 0;       // D: 64 or 128
  int warm_bits = 4;      // b: 2, 4 or 8
  int group_size = 128;   // g (effective: min(config group_size, D)); must divide D
  int hot_capacity = 0;   // C_hot (akv.md §3: hot_budget + batch + chunk + cap)
  int warm_capacity = 0;  // C_warm (akv.md §3: warm_budget + 2*batch + chunk + cap)
  KvDType dtype = KvDType::kBf16;  // hot tier / q / out element type

  KV_HD int Groups() const { return head_dim / group_size; }                 // Gn
  KV_HD int CodeBytes() const { return head_dim * warm_bits / 8; }           // Cb
  KV_HD int64_t HotLayerElems() const { return int64_t(hot_capacity) * num_kv_heads * head_dim; }
  KV_HD int64_t WarmLayerBytes() const { return int64_t(warm_capacity) * num_kv_heads * CodeBytes(); }
  KV_HD int64_t WarmLayerGroups() const { return int64_t(warm_capacity) * num_kv_heads * Groups(); }
};

// Tier buffers of layer 0 (see the layout table above). Pointers are device
// pointers for launchers and host pointers for CPU twins.
struct AkvTiers {
  void* hot_k = nullptr;              // [L, C_hot, Hkv, D] dtype
  void* hot_v = nullptr;              // [L, C_hot, Hkv, D] dtype
  int32_t* hot_pos = nullptr;         // [L, C_hot]
  float* hot_score = nullptr;         // [L, C_hot]
  uint8_t* warm_k = nullptr;          // [L, C_warm, Hkv, Cb]
  uint8_t* warm_v = nullptr;          // [L, C_warm, Hkv, Cb]
  uint16_t* warm_k_scale = nullptr;   // [L, C_warm, Hkv, Gn] fp16 bits
  uint16_t* warm_k_zero = nullptr;    // [L, C_warm, Hkv, Gn] fp16 bits
  uint16_t* warm_v_scale = nullptr;   // [L, C_warm, Hkv, Gn] fp16 bits
  uint16_t* warm_v_zero = nullptr;    // [L, C_warm, Hkv, Gn] fp16 bits
  int32_t* warm_pos = nullptr;        // [L, C_warm]
  float* warm_score = nullptr;        // [L, C_warm]
  float* warm_a = nullptr;            // [L, C_warm]
  int32_t* counts = nullptr;          // [L, kAkvCountSlots]
};

// The same buffers moved to layer `l` (pointer arithmetic only; null stays null).
template <class P>
KV_HD P* AkvAdvance(P* p, int64_t n) { return p ? p + n : p; }

KV_HD AkvTiers AkvTiersAtLayer(const AkvTiers& t, const AkvLayout& lay, int l) {
  AkvTiers r = t;
  const int64_t esz = lay.dtype == KvDType::kFp32 ? 4 : 2;
  const int64_t hot_bytes = lay.HotLayerElems() * esz * l;
  const int64_t hot_rows = int64_t(lay.hot_capacity) * l, warm_rows = int64_t(lay.warm_capacity) * l;
  r.hot_k = AkvAdvance(static_cast<uint8_t*>(t.hot_k), hot_bytes);
  r.hot_v = AkvAdvance(static_cast<uint8_t*>(t.hot_v), hot_bytes);
  r.hot_pos = AkvAdvance(t.hot_pos, hot_rows);
  r.hot_score = AkvAdvance(t.hot_score, hot_rows);
  r.warm_k = AkvAdvance(t.warm_k, lay.WarmLayerBytes() * l);
  r.warm_v = AkvAdvance(t.warm_v, lay.WarmLayerBytes() * l);
  r.warm_k_scale = AkvAdvance(t.warm_k_scale, lay.WarmLayerGroups() * l);
  r.warm_k_zero = AkvAdvance(t.warm_k_zero, lay.WarmLayerGroups() * l);
  r.warm_v_scale = AkvAdvance(t.warm_v_scale, lay.WarmLayerGroups() * l);
  r.warm_v_zero = AkvAdvance(t.warm_v_zero, lay.WarmLayerGroups() * l);
  r.warm_pos = AkvAdvance(t.warm_pos, warm_rows);
  r.warm_score = AkvAdvance(t.warm_score, warm_rows);
  r.warm_a = AkvAdvance(t.warm_a, warm_rows);
  r.counts = AkvAdvance(t.counts, int64_t(kAkvCountSlots) * l);
  return r;
}

// Index lists written by akv_select and read by akv_migrate; every list is
// sorted ascending by slot index (so migrate's tail writes keep tier order).
struct AkvLists {
  int32_t* demote = nullptr;   // [L, C_hot]  hot slots leaving for warm
  int32_t* promote = nullptr;  // [L, C_warm] warm slots leaving for hot
  int32_t* cold = nullptr;     // [L, C_warm] "virtual warm" slots leaving warm: index i < n_warm is
                               // warm slot i, n_warm + k is the k-th demoted hot row (migrate writes
                               // it to warm slot n_warm + k before compaction)
};

// Optional destination of rows leaving warm (akv.md §4 step 6): the codes are
// copied unchanged (b bits) for the warm->cold path to re-quantize and copy
// to host. Warm-tier row layout with S = rows_per_layer rows per layer (0 =
// C_warm); the k-th row leaving layer l's warm goes to stage row l*S + k, and
// rows past S are dropped (the engine sizes S from akv.md §4's bound on one
// step's warm overflow). A null stage means the rows are evicted
// (enable_cold_tier = false).
struct AkvColdStage {
  uint8_t* k = nullptr;            // [L, S, Hkv, Cb]
  uint8_t* v = nullptr;            // [L, S, Hkv, Cb]
  uint16_t* k_scale = nullptr;     // [L, S, Hkv, Gn]
  uint16_t* k_zero = nullptr;      // [L, S, Hkv, Gn]
  uint16_t* v_scale = nullptr;     // [L, S, Hkv, Gn]
  uint16_t* v_zero = nullptr;      // [L, S, Hkv, Gn]
  int32_t* pos = nullptr;          // [L, S]
  float* score = nullptr;          // [L, S] w of the row when it left
  int rows_per_layer = 0;          // S (0 = layout.warm_capacity); last, so {pointers...} init keeps 0

  KV_HD int Rows(const AkvLayout& lay) const { return rows_per_layer > 0 ? rows_per_layer : lay.warm_capacity; }
};

// ---- policy knobs (akv.md §5) ----------------------------------------------------
enum class AkvScoring : uint8_t { kImportance = 1, kHybrid = 2, kFifo = 3 };

struct AkvPolicy {
  AkvScoring mode = AkvScoring::kImportance;
  int hot_budget = 1024;        // effective hot budget (adaptive_hot_frac applied by the host)
  const int32_t* hot_budget_live = nullptr;  // optional [1] int32, same memory side as the tiers:
                                // overrides hot_budget (graph replay with adaptive_hot_frac)
  int warm_budget = 2048;       // 0 = no warm tier: every demoted row goes on to cold/evict
  int eviction_batch_size = 64;
  int initial_tokens_protected = 4;   // sinks: pos < this never leave hot
  int recent_tokens_protected = 32;   // HYBRID / FIFO recency window
  int n_anchors = 16;                 // IMPORTANCE: recency window = hot_budget - n_anchors
  bool enable_promotion = true;
  float promote_threshold = 0.05f;
  int promote_max_per_step = 0;       // 0 = max(1, hot_budget / 8)
};

// R: how many newest hot rows are protected (akv.md §4 step 5).
KV_HD int AkvRecentProtected(const AkvPolicy& p, int hot_budget) {
  if (p.mode == AkvScoring::kImportance) return hot_budget > p.n_anchors ? hot_budget - p.n_anchors : 0;
  return p.recent_tokens_protected;
}

// cap of promotions per step (akv.md §4 step 4); 0 when promotion is off.
KV_HD int AkvPromoteCap(const AkvPolicy& p, int hot_budget) {
  if (!p.enable_promotion || p.mode == AkvScoring::kFifo) return 0;
  int cap = p.promote_max_per_step > 0 ? p.promote_max_per_step : (hot_budget / 8 > 1 ? hot_budget / 8 : 1);
  if (p.mode == AkvScoring::kImportance && cap > p.n_anchors) cap = p.n_anchors;
  return cap;
}

// Total order used by every selection (kernel and twin agree bit for bit):
// a 64-bit key whose ascending order is (score ascending, pos ascending).
// -0.0 is folded into +0.0 so the order equals float comparison; positions
// are unique within a layer, so keys are unique.
KV_HD uint64_t AkvKeyAscending(float score, int32_t pos) {
  uint32_t u;
  const float s = score + 0.0f;  // -0 -> +0
  memcpy(&u, &s, 4);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(u) << 32) | static_cast<uint32_t>(pos);
}
// Ascending order of this key = (score descending, pos descending).
KV_HD uint64_t AkvKeyDescending(float score, int32_t pos) { return ~AkvKeyAscending(score, pos); }
// FIFO order: pos ascending.
KV_HD uint64_t AkvKeyPos(int32_t pos) { return static_cast<uint32_t>(pos); }

}  // namespace kvstream
