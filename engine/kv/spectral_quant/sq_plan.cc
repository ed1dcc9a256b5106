#include "engine/kv/spectral_quant/sq_plan.h"

#include <algorithm>
#include <cmath>

#include "kernels/spectral_quant/sq_layout.h"
#include "kernels/spectral_quant/sq_tables.h"

namespace kvstream {

int SqDeff(const float* lambda, int D, double tau) {
  double total = 0.0;
  for (int i = 0; i < D; ++i) total += std::max(static_cast<double>(lambda[i]), 0.0);
  if (total <= 1e-12) return 2;
  int n = 0;
  double cum = 0.0;
  for (int i = 0; i < D; ++i) {
    cum += std::max(static_cast<double>(lambda[i]), 0.0);
    if (cum / total < tau) ++n;
  }
  return std::clamp(n + 1, 2, std::max(2, D - 2));
}

SqBits SqBitWidths(const SpectralQuantConfig& c, int d_eff, int D) {
  SqBits b;
  if (c.noise_bits) {
    b.b_low = std::max(1, *c.noise_bits);
    b.b_low_val = std::max(1, c.value_noise_bits.value_or(*c.noise_bits));
    b.b_high = c.total_bits + 1;
  } else {
    // Python's round(): half to even; nearbyint under the default rounding mode.
    const double x = static_cast<double>(c.total_bits) - static_cast<double>(d_eff) / static_cast<double>(D);
    b.b_low = std::max(1, static_cast<int>(std::nearbyint(x)));
    b.b_low_val = b.b_low;  // legacy mode ignores value_noise_bits (§4.2.2)
    b.b_high = b.b_low + 1;
  }
  b.mse_bits_high = std::max(b.b_high - 1, 1);  // keys keep a QJL sign slot even with QJL off
  return b;
}

namespace {

// One greedy bit fill: widths start at min_w and each of the budget's
// remaining bits goes to the dim below max_w with the largest gain(i, w[i]);
// strict comparison, so ties keep the lowest index.
template <class Gain>
std::vector<int> GreedyFill(int n, int budget, int min_w, int max_w, Gain gain) {
  std::vector<int> w(n, min_w);
  for (int step = budget - n * min_w; step > 0; --step) {
    int best = -1;
    double best_gain = 0.0;
    for (int i = 0; i < n; ++i) {
      if (w[i] >= max_w) continue;
      const double g = gain(i, w[i]);
      if (best < 0 || g > best_gain) {
        best = i;
        best_gain = g;
      }
    }
    if (best < 0) break;
    ++w[best];
  }
  return w;
}

}  // namespace

std::vector<int> SqWaterFill(const float* lambda, int n, int budget, int min_w, int max_w) {
  return GreedyFill(n, budget, min_w, max_w, [&](int i, int w) {
    return std::max(static_cast<double>(lambda[i]), 1e-12) / std::pow(4.0, w);
  });
}

double SqUnitMse(int w) {
  static const std::vector<double> mse = [] {
    std::vector<double> m(kSqMaxWidth + 1, 1.0);  // width 0 = the dim dropped: its variance
    double c[1 << kSqMaxWidth];
    for (int b = kSqMinWidth; b <= kSqMaxWidth; ++b) {
      SqLloydMaxUnit(b, c);
      m[b] = SqUnitCodebookMse(c, b);
    }
    return m;
  }();
  return mse[std::clamp(w, 0, kSqMaxWidth)];
}

std::vector<int> SqRdWidths(const float* lambda, int n, int budget) {
  return GreedyFill(n, budget, kSqMinWidth, kSqMaxWidth, [&](int i, int w) {
    return std::max(static_cast<double>(lambda[i]), 1e-12) * (SqUnitMse(w) - SqUnitMse(w + 1));
  });
}

namespace {

// sqrt(max(lambda_i, floor)): a dim's sigma, floored.
float Sigma(const SqSpectrum& s, int i, double floor) {
  return static_cast<float>(std::sqrt(std::max(static_cast<double>(s.lambda[i]), floor)));
}

// Stores per-dim widths and scales into p, d_eff, the bit offsets and the
// record's total bits (what every allocation mode ends with).
void Layout(const std::vector<int>& width, const std::vector<float>& scale, int d_eff, SqTypePlan* p) {
  const int D = static_cast<int>(width.size());
  p->d_eff = d_eff;
  p->width.assign(D, 0);
  p->scale.assign(scale.begin(), scale.end());
  p->offset.assign(D, 0);
  int off = 0;
  for (int i = 0; i < D; ++i) {
    p->width[i] = static_cast<uint8_t>(width[i]);
    p->offset[i] = static_cast<uint16_t>(off);
    off += width[i];
  }
  p->bits = off;
}

// rd_allocation (sq_config.h): every dim from one greedy fill, own sigma.
void FillRd(const SqSpectrum& s, int D, int d_eff, int budget, SqTypePlan* p) {
  std::vector<float> scale(D);
  for (int i = 0; i < D; ++i) scale[i] = Sigma(s, i, 1e-8);
  Layout(SqRdWidths(s.lambda.data(), D, budget), scale, d_eff, p);
}

// Widths/scales of one type: semantic dims [0, d) from `sem` widths and
// `sem_scale`, tail dims [d, D) at `tail_w` with sigma floored at 1/sqrt(D).
void FillType(const SqSpectrum& s, int D, int d, const std::vector<int>& sem_w, const std::vector<float>& sem_scale,
              int tail_w, SqTypePlan* p) {
  std::vector<int> width(D, tail_w);
  std::vector<float> scale(D);
  for (int i = 0; i < D; ++i) {
    if (i < d) {
      width[i] = sem_w[i];
      scale[i] = sem_scale[i];
    } else {
      scale[i] = Sigma(s, i, 1.0 / D);
    }
  }
  Layout(width, scale, d, p);
}

// §4.2.3 shared semantic sigma: sqrt(max(mean(lambda_<d), 1e-8)).
float SharedSigma(const SqSpectrum& s, int d) {
  double m = 0.0;
  for (int i = 0; i < d; ++i) m += s.lambda[i];
  return static_cast<float>(std::sqrt(std::max(m / d, 1e-8)));
}

}  // namespace

void SqBuildHeadPlan(const SpectralQuantConfig& c, const SqSpectrum& k, const SqSpectrum& v, int D,
                     SqTypePlan* kp, SqTypePlan* vp, SqBits* bits, int bits_d_eff) {
  const int dk = SqDeff(k.lambda.data(), D, c.d_eff_variance);
  const int dv = SqDeff(v.lambda.data(), D, c.d_eff_variance);
  const SqBits b = SqBitWidths(c, bits_d_eff >= 0 ? bits_d_eff : dk, D);
  *bits = b;
  if (c.RdAllocation()) {
    FillRd(k, D, dk, SqRdBudget(c, 0, D), kp);
    FillRd(v, D, dv, SqRdBudget(c, 1, D), vp);
    // Seed formula (§3): the stored bits + the 32 reserved K bits (+ d_eff signs with QJL).
    kp->seed_bits = kp->bits + 32 + (c.use_qjl ? dk : 0);
    vp->seed_bits = vp->bits;
    return;
  }
  std::vector<int> wk, wv;
  std::vector<float> sk(dk), sv(dv);
  if (c.use_water_fill) {
    wk = SqWaterFill(k.lambda.data(), dk, dk * b.mse_bits_high, 1, b.mse_bits_high + 2);
    wv = SqWaterFill(v.lambda.data(), dv, dv * b.b_high, 1, b.b_high + 2);
    for (int i = 0; i < dk; ++i) sk[i] = Sigma(k, i, 1e-8);
    for (int i = 0; i < dv; ++i) sv[i] = Sigma(v, i, 1e-8);
  } else {
    wk.assign(dk, b.mse_bits_high);
    wv.assign(dv, b.b_high);
    std::fill(sk.begin(), sk.end(), SharedSigma(k, dk));
    std::fill(sv.begin(), sv.end(), SharedSigma(v, dv));
  }
  FillType(k, D, dk, wk, sk, b.b_low, kp);
  FillType(v, D, dv, wv, sv, b.b_low_val, vp);
  // Seed formula (§3): K counts r_norm + reserved (32) always and d_eff sign
  // bits with QJL; without water-fill it counts d_eff * b_high semantic bits
  // although b_high - 1 are stored (§6.9).
  int k_sem = 0;
  for (int i = 0; i < dk; ++i) k_sem += kp->width[i];
  if (!c.use_water_fill) k_sem = dk * b.b_high;
  kp->seed_bits = k_sem + (D - dk) * b.b_low + 32 + (c.use_qjl ? dk : 0);
  vp->seed_bits = vp->bits;
}

int SqLayerBitsDeff(const SpectralQuantConfig& c, const SqProfile& p, int64_t layer, bool centred_k) {
  int d = p.head_dim;
  for (int h = 0; h < p.n_kv_heads; ++h) {
    d = std::min(d, SqDeff(p.at(layer, h, 0, centred_k).lambda.data(), p.head_dim, c.d_eff_variance));
  }
  return d;
}

void SqBuildLayerPlan(const SpectralQuantConfig& c, const SqProfile& p, int64_t layer, bool centred_k, bool centred_v,
                      SqLayerPlan* lp) {
  lp->k.resize(p.n_kv_heads);
  lp->v.resize(p.n_kv_heads);
  lp->bits.resize(p.n_kv_heads);
  const int rule_d = SqLayerBitsDeff(c, p, layer, centred_k);
  for (int h = 0; h < p.n_kv_heads; ++h) {
    SqBuildHeadPlan(c, p.at(layer, h, 0, centred_k), p.at(layer, h, 1, centred_v), p.head_dim, &lp->k[h], &lp->v[h],
                    &lp->bits[h], rule_d);
    // Records of a layer are padded to its widest head (README decision).
    lp->words_k = std::max(lp->words_k, SqRecordWords(lp->k[h].bits));
    lp->words_v = std::max(lp->words_v, SqRecordWords(lp->v[h].bits));
    lp->k_max_d_eff = std::max(lp->k_max_d_eff, lp->k[h].d_eff);
  }
}

std::shared_ptr<const SqPlan> SqSlicePlan(const SqPlan& plan, int64_t begin, int64_t count) {
  auto out = std::make_shared<SqPlan>(plan);
  out->n_kv_heads = count;
  out->head_offset = plan.head_offset + begin;
  for (SqLayerPlan& lp : out->layers) {
    lp.k = std::vector<SqTypePlan>(lp.k.begin() + begin, lp.k.begin() + begin + count);
    lp.v = std::vector<SqTypePlan>(lp.v.begin() + begin, lp.v.begin() + begin + count);
    lp.bits = std::vector<SqBits>(lp.bits.begin() + begin, lp.bits.begin() + begin + count);
  }
  return out;
}

SqProfile SqSliceProfile(const SqProfile& p, int64_t begin, int64_t count) {
  SqProfile out;
  out.name = p.name;
  out.model_hash = p.model_hash;
  out.n_layers = p.n_layers;
  out.n_kv_heads = static_cast<int32_t>(count);
  out.head_dim = p.head_dim;
  out.n_tokens = p.n_tokens;
  for (int64_t l = 0; l < p.n_layers; ++l) {
    for (int64_t h = begin; h < begin + count; ++h) {
      for (int t = 0; t < 2; ++t) {
        out.spectra.push_back(p.at(l, h, t));
        if (p.has_centered()) out.centered.push_back(p.at(l, h, t, true));
      }
    }
  }
  return out;
}

std::shared_ptr<const SqPlan> SqBuildPlan(const SpectralQuantConfig& c, const SqProfile& p) {
  auto plan = std::make_shared<SqPlan>();
  plan->config = c;
  plan->head_dim = p.head_dim;
  plan->n_kv_heads = p.n_kv_heads;
  plan->layers.resize(p.n_layers);
  plan->centred_k = SqPlanCentred(c, p, 0);
  plan->centred_v = SqPlanCentred(c, p, 1);
  int max_dk = 0;
  for (int l = 0; l < p.n_layers; ++l) {
    SqBuildLayerPlan(c, p, l, plan->centred_k, plan->centred_v, &plan->layers[l]);
    for (const SqTypePlan& k : plan->layers[l].k) max_dk = std::max(max_dk, k.d_eff);
  }
  plan->qjl_words = c.use_qjl ? (max_dk + 31) / 32 : 0;
  return plan;
}

std::shared_ptr<const SqPlan> SqPlanCache::Get(const SpectralQuantConfig& c, const SqProfile& p, bool* hit) {
  const Key key = c.PlanKey();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = plans_.find(key);
    if (it != plans_.end()) {
      order_.splice(order_.begin(), order_, it->second.second);
      if (hit != nullptr) *hit = true;
      return it->second.first;
    }
  }
  std::shared_ptr<const SqPlan> plan = SqBuildPlan(c, p);  // outside the lock: pure
  std::lock_guard<std::mutex> lock(mu_);
  if (hit != nullptr) *hit = false;
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second.first;  // another thread built it
  order_.push_front(key);
  plans_[key] = {plan, order_.begin()};
  while (plans_.size() > capacity_) {
    plans_.erase(order_.back());
    order_.pop_back();
  }
  return plan;
}

size_t SqPlanCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return plans_.size();
}

}  // namespace kvstream
