// LaserKvSequenceCache::Report (laser_kv.md §8).
#include <algorithm>

#include "engine/kv/laser_kv/laser_kv_strategy.h"

namespace kvstream {

CacheReport LaserKvSequenceCache::Report() const {
  CacheReport r;
  r.strategy = "laser_kv";
  r.kv_bytes_device = BytesHeld();
  r.tokens_seen = tokens_seen_;
  r.tokens_held = c_len_ + static_cast<int64_t>(t_pos_.size()) + b_len_;
  r.dense_equivalent_bytes = r.tokens_seen * geometry_.DenseBytesPerToken16();
  r.compression_ratio =
      r.kv_bytes_device > 0 ? static_cast<double>(r.dense_equivalent_bytes) / static_cast<double>(r.kv_bytes_device)
                            : 0.0;
  r.peak_kv_bytes = std::max(peak_bytes_, r.kv_bytes_device);
  r.compression_ms = scoring_ms_ + lsh_ms_ + compaction_ms_;
  const int64_t per_layer = geometry_.n_layers > 0 ? r.kv_bytes_device / geometry_.n_layers : 0;
  for (int64_t l = 0; l < geometry_.n_layers; ++l) {
    LayerCacheReport lr;
    lr.layer = static_cast<int32_t>(l);
    lr.detail = "shared index set";
    lr.bytes = per_layer;
    lr.tokens_held = r.tokens_held;
    r.layers.push_back(std::move(lr));
  }
  const LaserBudget b = budget_.value_or(LaserBudget{});
  auto& s = r.stats;
  s["dense_fallback"] = b.dense ? 1 : 0;
  s["mode"] = static_cast<double>(config_.mode);
  s["B"] = static_cast<double>(b.B);
  s["A"] = static_cast<double>(b.A);
  s["W"] = static_cast<double>(b.W);
  s["G"] = static_cast<double>(b.G);
  s["G_p"] = static_cast<double>(b.G_p);
  s["G_s"] = static_cast<double>(b.G_s);
  s["blocks"] = static_cast<double>(blocks_done_);
  s["S"] = static_cast<double>(b.S);
  s["q"] = static_cast<double>(b.q);
  s["kept_after_prefill"] = static_cast<double>(kept_after_prefill_);
  s["kept_fraction"] = b.S > 0 ? static_cast<double>(kept_after_prefill_) / static_cast<double>(b.S) : 0.0;
  s["picks_exact"] = static_cast<double>(picks_exact_);
  s["picks_lsh"] = static_cast<double>(picks_lsh_);
  s["tail_candidates"] = static_cast<double>(tail_candidates_);
  s["tail_reselected"] = static_cast<double>(tail_reselected_);
  s["history_candidates"] = static_cast<double>(history_candidates_);
  s["lsh_survivors_total"] = static_cast<double>(lsh_survivors_);
  s["lsh_fallback_picks"] = static_cast<double>(lsh_fallback_);
  s["num_bits"] = static_cast<double>(config_.num_bits);
  s["num_tables"] = static_cast<double>(config_.num_tables);
  s["score_window_tokens_total"] = static_cast<double>(window_tokens_);
  s["scoring_ms"] = scoring_ms_;
  s["lsh_ms"] = lsh_ms_;
  s["compaction_ms"] = compaction_ms_;
  return r;
}

}  // namespace kvstream
