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
