// The per-response report of spectral_quant.md §8.
#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/kv/spectral_quant/sq_strategy.h"

namespace kvstream {

CacheReport SpectralQuantSequenceCache::Report() const {
  CacheReport r;
  r.strategy = kSqName;
  r.kv_bytes_device = BytesHeld();
  r.tokens_seen = tokens_seen_;
  r.dense_equivalent_bytes = r.tokens_seen * geometry_.DenseBytesPerToken16();
  r.compression_ratio =
      r.kv_bytes_device > 0 ? static_cast<double>(r.dense_equivalent_bytes) / r.kv_bytes_device : 0.0;
  r.peak_kv_bytes = std::max(peak_bytes_, r.kv_bytes_device);
  r.compression_ms = compression_ms_;
  const SqPlan* plan = dplan_ ? dplan_->plan.get() : own_plan_.get();
  const SqProfile* prof = profile_ ? profile_.get() : own_profile_.get();
  const int64_t Hk = geometry_.n_kv_heads, D = geometry_.head_dim;
  double kd_sum = 0, vd_sum = 0, pr_sum = 0, bh = 0, bl = 0, blv = 0, kb = 0, vb = 0, kphys = 0, vphys = 0;
  int kd_min = INT32_MAX, kd_max = 0, vd_min = INT32_MAX, vd_max = 0;
  int64_t heads = 0, planned_layers = 0;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& L = layers_[l];
    LayerCacheReport lr;
    lr.layer = static_cast<int32_t>(l);
    lr.tokens_held = L.n_sink + L.n_comp + L.n_dense;
    for (const at::Tensor* t : {&L.k_rec, &L.v_rec, &L.r_norm, &L.signs, &L.k_tail, &L.v_tail, &L.k_sink, &L.v_sink}) {
      if (t->defined()) lr.bytes += static_cast<int64_t>(t->nbytes());
    }
    if (L.dev != nullptr && l < plan->layers.size() && !plan->layers[l].k.empty()) {
      const SqLayerPlan& lp = plan->layers[l];
      int lk_min = INT32_MAX, lk_max = 0, lv_min = INT32_MAX, lv_max = 0;
      double lkb = 0, lvb = 0, w0 = 0;
      for (int64_t h = 0; h < Hk; ++h) {
        const SqTypePlan &k = lp.k[h], &v = lp.v[h];
        lk_min = std::min(lk_min, k.d_eff), lk_max = std::max(lk_max, k.d_eff);
        lv_min = std::min(lv_min, v.d_eff), lv_max = std::max(lv_max, v.d_eff);
        kd_sum += k.d_eff, vd_sum += v.d_eff;
        pr_sum += prof->at(static_cast<int64_t>(l), h, 0).participation_ratio;
        bh += lp.bits[h].b_high, bl += lp.bits[h].b_low, blv += lp.bits[h].b_low_val;
        lkb += k.seed_bits, lvb += v.seed_bits, w0 += k.width[0];
        ++heads;
      }
      kd_min = std::min(kd_min, lk_min), kd_max = std::max(kd_max, lk_max);
      vd_min = std::min(vd_min, lv_min), vd_max = std::max(vd_max, lv_max);
      kb += lkb, vb += lvb;
      kphys += L.dev->words_k * 4.0 + (config_.use_qjl ? 2.0 + 4.0 * L.dev->sign_words : 0.0);
      vphys += L.dev->words_v * 4.0;
      ++planned_layers;
      lr.detail = absl::StrCat("K d_eff ", lk_min, "..", lk_max, " / V d_eff ", lv_min, "..", lv_max);
      lr.stats = {{"k_bits", lkb / Hk}, {"v_bits", lvb / Hk}, {"k_w0", w0 / Hk}};
    } else {
      lr.detail = "EMPTY";
    }
    r.tokens_held = std::max(r.tokens_held, lr.tokens_held);
    r.layers.push_back(std::move(lr));
  }
  const double nh = std::max<int64_t>(heads, 1), nl = std::max<int64_t>(planned_layers, 1);
  const double k_bits = kb / nh, v_bits = vb / nh;
  r.stats = {{"k_d_eff_mean", kd_sum / nh},
             {"k_d_eff_min", heads ? kd_min : 0},
             {"k_d_eff_max", kd_max},
             {"v_d_eff_mean", vd_sum / nh},
             {"v_d_eff_min", heads ? vd_min : 0},
             {"v_d_eff_max", vd_max},
             {"k_pr_mean", pr_sum / nh},
             {"b_high", bh / nh},
             {"b_low", bl / nh},
             {"b_low_val", blv / nh},
             {"k_bits_per_token", k_bits},
             {"v_bits_per_token", v_bits},
             {"k_bytes_physical", kphys / nl},
             {"v_bytes_physical", vphys / nl},
             {"seed_ratio", heads ? SqSeedRatio(static_cast<int>(D), k_bits, v_bits) : 0.0},
             {"tq_reference_ratio", SqTqReferenceRatio(static_cast<int>(D))},
             {"tokens_compressed", static_cast<double>(layers_.empty() ? 0 : layers_[0].n_comp)},
             {"tokens_dense", static_cast<double>(layers_.empty() ? 0 : layers_[0].n_dense)},
             {"tokens_sink", static_cast<double>(layers_.empty() ? 0 : layers_[0].n_sink)},
             {"recent_window", static_cast<double>(recent_)},
             {"center_keys", plan != nullptr && plan->centred_k ? 1.0 : 0.0},
             {"center_values", plan != nullptr && plan->centred_v ? 1.0 : 0.0},
             {"use_qjl", config_.use_qjl ? 1.0 : 0.0},
             {"calib_tokens", static_cast<double>(prof->n_tokens)},
             {"plan_cache_hit", plan_cache_hit_ ? 1.0 : 0.0}};
  return r;
}

}  // namespace kvstream
