// SpectralQuant plans (spectral_quant.md §3 "per plan", §4.2): for one
// (profile, knob tuple), every (layer, KV head) gets d_eff / v_d_eff, a width
// w_i (1..8), a scale s_i and a bit offset for each eigen-dimension of K and
// of V. Plans are built from the profile's eigenvalues alone (microseconds:
// the Lloyd-Max tables are unit tables scaled by s_i, §4.2.5) and cached in
// an LRU keyed by (profile, knob tuple) (§6.4).
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/kv/spectral_quant/sq_config.h"
#include "engine/kv/spectral_quant/sq_profile.h"

namespace kvstream {

// §4.2.1: fewest leading dims whose energy fraction reaches tau, clamped to
// [2, D-2]; 2 when the energy is ~0. lambda [D] descending.
int SqDeff(const float* lambda, int D, double tau);

// §4.2.2 (per head: legacy b_low depends on that head's key d_eff).
struct SqBits {
  int b_low = 0;          // key tail width
  int b_low_val = 0;      // value tail width
  int b_high = 0;         // value semantic width (no water-fill)
  int mse_bits_high = 0;  // key semantic width (no water-fill) = max(b_high-1, 1)
};
SqBits SqBitWidths(const SpectralQuantConfig& c, int d_eff, int D);

// §4.2.4 water-fill (U waterfill.py): every w_i = min_w, then (budget - n*min_w)
// times w_i += 1 at argmax max(lambda_i, 1e-12) / 4^w_i among w_i < max_w
// (ties -> lowest i). lambda [n]. Stops early only if every w_i == max_w.
std::vector<int> SqWaterFill(const float* lambda, int n, int budget, int min_w, int max_w);

// [kvstream choice, issue 11] rd_allocation (sq_config.h): the unit
// Lloyd-Max MSE of width w (sq_tables.h; 1.0 at w = 0), the greedy
// rate-distortion widths of n dims (each in [1, 8], summing to `budget`
// unless every dim reached 8) and the budget of a type (0 = K, 1 = V).
double SqUnitMse(int w);
std::vector<int> SqRdWidths(const float* lambda, int n, int budget);
inline int SqRdBudget(const SpectralQuantConfig& c, int type, int D) {
  return c.total_bits * D + (type == 1 ? D / 2 : 0);
}

// Seed ratio (§3): 2D fp16 bytes over the mean of the K and V record bytes
// of the seed formula; TurboQuant's reference record is 2D/8 + D/8 + 4 bytes.
inline double SqSeedRatio(int D, double k_bits, double v_bits) { return 2.0 * D / ((k_bits / 8 + v_bits / 8) / 2); }
inline double SqTqReferenceRatio(int D) { return 2.0 * D / (2.0 * D / 8 + D / 8.0 + 4); }

// One (layer, head, type): per eigen-dimension width, scale and bit offset.
struct SqTypePlan {
  int d_eff = 0;                 // semantic dims (K d_eff or V v_d_eff)
  std::vector<uint8_t> width;    // [D] 1..8
  std::vector<float> scale;      // [D] s_i (> 0)
  std::vector<uint16_t> offset;  // [D] bit offset of dim i in the record (LSB-first)
  int bits = 0;                  // sum of widths (record payload)
  double seed_bits = 0.0;        // seed-formula bits per token (§3, quirks §6.9)
};

struct SqLayerPlan {
  std::vector<SqTypePlan> k, v;  // [Hkv]
  std::vector<SqBits> bits;      // [Hkv]
  int words_k = 0, words_v = 0;  // u32 words per record, padded to the widest head (README)
  int k_max_d_eff = 0;           // widest key d_eff of the layer's heads (QJL sign words)
};

struct SqPlan {
  SpectralQuantConfig config;
  int64_t head_dim = 0, n_kv_heads = 0;
  std::vector<SqLayerPlan> layers;  // [L]
  int qjl_words = 0;                // u32 sign words per K record when use_qjl (ceil(max d_eff / 32))
  bool centred_k = false, centred_v = false;  // built from the centred spectra (SqPlanCentred)
  int64_t head_offset = 0;  // model KV head of this plan's head 0 (a tensor-parallel rank's slice)
};

// Tensor parallelism (issue 14): heads [begin, begin + count) of a plan built
// on the whole model's profile, and of that profile. The layer-wide choices
// (legacy b_low from the layer's smallest d_eff, records padded to its
// widest head, QJL sign words) stay the whole model's, so every rank codes
// its heads exactly as one GPU would.
std::shared_ptr<const SqPlan> SqSlicePlan(const SqPlan& plan, int64_t begin, int64_t count);
SqProfile SqSliceProfile(const SqProfile& p, int64_t begin, int64_t count);

// Whether plans of `c` on `p` code centred keys (type 0) / values (type 1):
// the knob and a profile with centred spectra (SqProfile::has_centered).
inline bool SqPlanCentred(const SpectralQuantConfig& c, const SqProfile& p, int type) {
  return (type == 0 ? c.center_keys : c.center_values) && p.has_centered();
}

// §4.2.3-4: one (layer, head) of `p` under `c`. bits_d_eff >= 0 replaces the
// head's key d_eff in the legacy b_low rule (SqLayerBitsDeff).
void SqBuildHeadPlan(const SpectralQuantConfig& c, const SqSpectrum& k, const SqSpectrum& v, int D,
                     SqTypePlan* kp, SqTypePlan* vp, SqBits* bits, int bits_d_eff = -1);
// [kvstream choice, issue 11] The key d_eff that sets legacy b_low for every
// head of a layer: the smallest of the layer's heads, so every head gets the
// widest head's b_low. Records are padded to the layer's widest head anyway
// (README), so this spends padding bytes already held on bits instead of
// zeros (SmolLM2-135M, d_eff near D/2: some heads got b_low 2, others 3 in
// the same layer; ppl ratio at defaults 1.59 -> ~1.31 at the same bytes).
// Noise mode does not use d_eff for widths.
int SqLayerBitsDeff(const SpectralQuantConfig& c, const SqProfile& p, int64_t layer, bool centred_k);
// One layer of a plan: every head through SqBuildHeadPlan with the layer's
// b_low rule, records padded to the widest head. Shared by SqBuildPlan and a
// cache calibrating its own profile layer by layer (sq_cache.cc).
void SqBuildLayerPlan(const SpectralQuantConfig& c, const SqProfile& p, int64_t layer, bool centred_k, bool centred_v,
                      SqLayerPlan* lp);
std::shared_ptr<const SqPlan> SqBuildPlan(const SpectralQuantConfig& c, const SqProfile& p);

// LRU of plans keyed by SpectralQuantConfig::PlanKey() (thread-safe).
class SqPlanCache {
 public:
  explicit SqPlanCache(size_t capacity = 16) : capacity_(capacity) {}
  // The cached plan or a new one; *hit says which.
  std::shared_ptr<const SqPlan> Get(const SpectralQuantConfig& c, const SqProfile& p, bool* hit = nullptr);
  size_t size() const;

 private:
  using Key = decltype(SpectralQuantConfig().PlanKey());
  size_t capacity_;
  mutable std::mutex mu_;
  std::list<Key> order_;  // most recent first
  std::map<Key, std::pair<std::shared_ptr<const SqPlan>, std::list<Key>::iterator>> plans_;
};

}  // namespace kvstream
