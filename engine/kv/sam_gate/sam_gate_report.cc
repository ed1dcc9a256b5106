// The per-response report of sam_gate.md §8.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kv/sam_gate/sam_gate_strategy.h"

namespace kvstream {

CacheReport SamGateSequenceCache::Report() const {
  CacheReport r;
  r.strategy = "sam_gate";
  r.kv_bytes_device = BytesHeld();
  for (const Layer& l : layers_) r.tokens_seen = std::max(r.tokens_seen, l.seen);
  r.dense_equivalent_bytes = r.tokens_seen * geometry_.DenseBytesPerToken16();
  r.compression_ratio =
      r.kv_bytes_device > 0 ? static_cast<double>(r.dense_equivalent_bytes) / r.kv_bytes_device : 0.0;
  r.peak_kv_bytes = std::max(peak_bytes_, r.kv_bytes_device);
  r.compression_ms = compression_ms_;
  int n[3] = {0, 0, 0};
  int skipped = 0;
  std::vector<double> fs;
  const int64_t H = geometry_.n_heads, Hk = geometry_.n_kv_heads, G = H / std::max<int64_t>(Hk, 1);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    LayerCacheReport lr;
    lr.layer = static_cast<int32_t>(i);
    if (l.built) {
      const SamLayerPlan& p = l.plan;
      ++n[static_cast<int>(p.regime)];
      skipped += l.probe_skipped ? 1 : 0;
      if (!std::isnan(l.f)) fs.push_back(l.f);
      lr.detail = SamRegimeName(p.regime);
      if (config_.calibrate) lr.detail = absl::StrCat("OBSTRUCTED(proposed=", SamRegimeName(l.proposed), ")");
      double e_min = std::numeric_limits<double>::quiet_NaN(), e_max = e_min;
      if (!l.e.empty()) {
        e_min = *std::min_element(l.e.begin(), l.e.end());
        e_max = *std::max_element(l.e.begin(), l.e.end());
      }
      lr.bytes = l.k_ring.nbytes() + l.v_ring.nbytes() + l.slot_pos.nbytes() + l.kept_groups.nbytes() +
                 l.head_ring_group.nbytes();
      lr.tokens_held = l.n_valid;
      double mask = 0.0;
      for (int32_t g : p.kept) mask += std::ldexp(1.0, g);
      const int64_t heads_kept = static_cast<int64_t>(p.kept.size()) * G;
      lr.stats = {{"f", l.f},
                  {"bits", p.bits},
                  {"window", p.window},
                  {"sinks", p.sinks},
                  {"capacity", p.Capacity()},
                  {"groups_kept", static_cast<double>(p.kept.size())},
                  {"heads_kept", static_cast<double>(heads_kept)},
                  {"heads_kept_frac", H > 0 ? static_cast<double>(heads_kept) / H : 0.0},
                  {"kept_group_mask", mask},
                  {"probe_skipped", l.probe_skipped ? 1.0 : 0.0},
                  {"tr_delta", l.tr_delta},
                  {"harmonic_heads", static_cast<double>(l.harmonic_heads)},
                  {"e_min", e_min},
                  {"e_max", e_max},
                  {"probe_P", static_cast<double>(l.probe_p)},
                  {"probe_K", static_cast<double>(l.probe_skipped ? 0 : config_.num_probes)},
                  {"proposed_regime", static_cast<double>(static_cast<int>(l.proposed))}};
    } else {
      lr.detail = "PREFILL";
      lr.bytes = l.stage_k.defined() ? l.stage_k.nbytes() + l.stage_v.nbytes() : 0;
      lr.tokens_held = l.seen;
    }
    r.tokens_held = std::max(r.tokens_held, lr.tokens_held);
    r.layers.push_back(std::move(lr));
  }
  std::sort(fs.begin(), fs.end());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.stats = {{"n_flat", n[0]},
             {"n_trans", n[1]},
             {"n_obs", n[2]},
             {"n_probe_skipped", skipped},
             {"calibrate", config_.calibrate ? 1.0 : 0.0},
             {"f_flat_max", config_.f_flat_max},
             {"f_obs_min", config_.f_obs_min},
             {"tau", config_.tau},
             {"num_probes", config_.num_probes},
             {"probe_window", config_.probe_window},
             {"num_sink_tokens", config_.num_sink_tokens},
             {"f_min", fs.empty() ? nan : fs.front()},
             {"f_median", fs.empty() ? nan : fs[fs.size() / 2]},
             {"f_max", fs.empty() ? nan : fs.back()},
             // 0 = seed placeholders, 1 = the model's profile, 2 = the request (C14).
             {"thresholds_source", static_cast<double>(static_cast<int>(config_.thresholds_from))}};
  // The profile's file name rides in a key (stats values are numbers).
  if (!profile_name_.empty()) r.stats["profile:" + profile_name_] = 1.0;
  return r;
}

}  // namespace kvstream
