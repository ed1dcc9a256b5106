// Device buffers of one AKV sequence, sized once at Open (akv.md §3), and the
// plan that sizes them: the same plan gives PredictBytes, so admission
// reserves exactly what Open allocates.
//
// Two tier sets per sequence (legend in kernels/akv/akv_layout.h):
//   managed    layers [first, L - last): hot + warm tiers, lists, cold stage
//   protected  the protect_first/last_layers layers: a hot tier holding every
//              token (strategies/README.md: "layers are dense and counted as such")
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/kv/akv/akv_config.h"
#include "engine/kv/kv_cache.h"
#include "kernels/akv/akv.h"

namespace kvstream {

struct AkvPlan {
  AkvLayout managed;        // C_hot, C_warm of the managed layers
  AkvLayout dense;          // protected layers: C_hot = every token, no warm
  int first = 0;            // first managed layer
  int managed_layers = 0;   // count of managed layers
  int dense_layers = 0;     // count of protected layers
  int stage_rows = 0;       // S: rows one step can move out of warm, per layer (0 = no cold stage)
  int cold_bits = 2;
  int scan_rows = 0;        // W: cold rows one cold scan rates per layer (0 = no scan)
  int scan_picks = 0;       // P: rows one scan can take back per layer (the largest promotion cap)
  int64_t max_tokens = 0;   // prompt + max_new the sizes were made for

  // Model layer -> (is managed, index within its tier set).
  bool IsManaged(int64_t layer) const { return layer >= first && layer < first + managed_layers; }
  int Index(int64_t layer) const {
    return IsManaged(layer) ? static_cast<int>(layer - first)
                            : (layer < first ? static_cast<int>(layer) : static_cast<int>(layer - managed_layers));
  }
  // Rows of the per-step scratch (positions, lse): the largest step.
  int64_t StepRows() const {
    return std::max(managed_layers > 0 ? managed.hot_capacity : 0, dense_layers > 0 ? dense.hot_capacity : 0);
  }
  // Device bytes every buffer of the plan takes (what Open allocates); on
  // CUDA also the cold path's re-quantization buffers.
  int64_t DeviceBytes(bool cuda, int64_t num_heads) const;
};

// The CUDA cold scan's buffers (akv_cold_scan_cuda.cc): byte offsets into
// one device buffer, each 256-aligned. [0, win_end) is the window one H2D
// brings and [stage_begin, stage_end) the promotions another brings; pinned
// host mirrors use the same offsets. Lm managed layers, W = scan_rows, P =
// scan_picks, Cc = D*cold_bits/8, Cb = D*warm_bits/8, Gn groups per head.
struct AkvScanLayout {
  // window, staged as a warm tier of cold_bits codes (the score kernel's input):
  int64_t win_k;          // [Lm, W, Hkv, Cc] cold key codes
  int64_t win_scale;      // [Lm, W, Hkv, Gn] fp16 bits
  int64_t win_zero;       // [Lm, W, Hkv, Gn] fp16 bits
  int64_t win_pos;        // [Lm, W] int32
  int64_t win_counts;     // [Lm, 16] int32: n_hot = 0, n_warm = rows in the window
  int64_t win_qpos;       // [1] int32: the frozen query's position
  int64_t win_end;
  // device only:
  int64_t hot;            // [Lm, 1, Hkv, D] dtype: the empty hot tier's one slot (never read)
  int64_t hot_meta;       // [Lm, 2] int32/fp32: its pos and score
  int64_t win_w, win_a;   // [Lm, W] fp32: score outputs (a is read back)
  int64_t q_live;         // [Lm, Hq, D] dtype: each layer's last query, kept every step
  int64_t q_frozen;       // [Lm, Hq, D] dtype: the one the scan in flight rates with
  int64_t lse_live;       // [Lm, Hq] fp32
  int64_t lse_frozen;     // [Lm, Hq] fp32
  // promotions (warm_bits codes, AkvColdStage order), best first per layer:
  int64_t stage_begin;
  int64_t st_k, st_v;     // [Lm, P, Hkv, Cb]
  int64_t st_groups;      // 4 x [Lm, P, Hkv, Gn] fp16 bits: k scale, k zero, v scale, v zero
  int64_t st_pos;         // [Lm, P] int32
  int64_t st_score;       // [Lm, P] fp32 (a_j)
  int64_t st_rows;        // [Lm] int32
  int64_t stage_end;
  int64_t total;          // device bytes
  int64_t host_bytes;     // pinned: the two mirrors and the shares read back ([Lm, W] fp32)
};
AkvScanLayout MakeAkvScanLayout(const AkvPlan& p, int64_t num_heads);

// Sizes for a sequence of at most `max_tokens` tokens (0 = the model's context).
AkvPlan MakeAkvPlan(const AkvConfig& c, const KvGeometry& g, int64_t max_tokens);

// One tier set's tensors; pointer views for the kernels.
struct AkvTierSet {
  AkvLayout layout;
  int num_layers = 0;
  at::Tensor hot_k, hot_v, hot_pos, hot_score;               // [L, C_hot, ...]
  at::Tensor warm_k, warm_v, warm_scale_zero, warm_pos, warm_score, warm_a;  // [L, C_warm, ...]
  at::Tensor counts;                                         // [L, 16] int32
  at::Tensor lists;                                          // demote [L,C_hot] ++ promote, cold [L,C_warm]
  at::Tensor stage;                                          // cold stage (bytes), [L, S, ...]
  int stage_rows = 0;

  AkvTiers Tiers() const;
  AkvLists Lists() const;
  AkvColdStage Stage() const;  // all null when there is no stage
  int64_t BytesHot() const;
  int64_t BytesWarm() const;
  int64_t BytesMetadata() const;
  int64_t Bytes() const { return BytesHot() + BytesWarm() + BytesMetadata(); }
};

// Allocates a tier set (counts zeroed) on `device`.
AkvTierSet AllocateTierSet(const AkvLayout& layout, int num_layers, int stage_rows, c10::Device device);


}  // namespace kvstream
