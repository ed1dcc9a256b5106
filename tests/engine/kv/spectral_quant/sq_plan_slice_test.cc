// SqSlicePlan / SqSliceProfile (tensor parallelism, issue 14): a rank's
// slice of the whole model's plan codes its heads exactly as the whole plan
// does: per-head widths, scales and offsets are the whole plan's heads, the
// layer-wide choices (padded record words, the QJL sign words' d_eff, the
// legacy b_low from the layer's smallest d_eff) stay the whole layer's, and
// stitching the slices of every rank gives back the whole plan and profile.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "engine/kv/spectral_quant/sq_plan.h"
#include "engine/model/llama_model.h"

namespace kvstream {
namespace {

constexpr float kDecay[5] = {0.5f, 0.8f, 0.95f, 0.985f, 0.99f};

// Heads with different energy spreads, so their d_eff, widths and record
// words differ within a layer (the layer-wide choices then matter).
SqProfile Profile(int layers, int heads, int D, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  SqProfile p;
  p.name = "default";
  p.n_layers = layers;
  p.n_kv_heads = heads;
  p.head_dim = D;
  for (int l = 0; l < layers; ++l) {
    for (int h = 0; h < heads; ++h) {
      for (int t = 0; t < 2; ++t) {
        SqSpectrum s;
        // Steep to nearly flat by head (d_eff from a few dims to over D/2,
        // where the legacy b_low changes), jittered per (l, t).
        const float decay = std::min(0.999f, kDecay[h % 5] + 0.01f * u(rng));
        float v = 100.0f;
        for (int i = 0; i < D; ++i, v *= decay) s.lambda.push_back(v + 1e-3f);
        s.vecs.assign(static_cast<size_t>(D) * D, 0.0f);
        for (int i = 0; i < D; ++i) s.vecs[static_cast<size_t>(i) * D + i] = 1.0f;
        SqFillDiagnostics(s);
        SqSpectrum c = s;
        c.mean.assign(D, u(rng));
        p.spectra.push_back(s);
        p.centered.push_back(c);
      }
    }
  }
  return p;
}

void ExpectSameType(const SqTypePlan& a, const SqTypePlan& b) {
  EXPECT_EQ(a.d_eff, b.d_eff);
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.scale, b.scale);
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.bits, b.bits);
}

TEST(SqPlanSlice, RankSlicesCodeEveryHeadAsTheWholePlanAndKeepLayerWideChoices) {
  const SqProfile whole = Profile(/*layers=*/3, /*heads=*/5, /*D=*/64, /*seed=*/11);
  for (int variant = 0; variant < 4; ++variant) {
    SpectralQuantConfig c;
    c.use_qjl = (variant & 1) != 0;
    c.rd_allocation = (variant & 2) != 0;  // off: the spec's d_eff widths, legacy b_low from the layer
    const std::shared_ptr<const SqPlan> plan = SqBuildPlan(c, whole);
    for (int size : {2, 3, 5}) {
      for (int r = 0; r < size; ++r) {
        const LlamaModel::ShardSpan span = LlamaModel::ShardOf(whole.n_kv_heads, r, size);
        const std::shared_ptr<const SqPlan> slice = SqSlicePlan(*plan, span.begin, span.count);
        const SqProfile ps = SqSliceProfile(whole, span.begin, span.count);
        ASSERT_EQ(slice->n_kv_heads, span.count);
        EXPECT_EQ(slice->head_offset, span.begin);
        EXPECT_EQ(ps.n_kv_heads, span.count);
        for (int l = 0; l < whole.n_layers; ++l) {
          const SqLayerPlan& a = plan->layers[l];
          const SqLayerPlan& b = slice->layers[l];
          EXPECT_EQ(b.words_k, a.words_k) << "layer " << l << ": records stay padded to the layer's widest head";
          EXPECT_EQ(b.words_v, a.words_v);
          EXPECT_EQ(b.k_max_d_eff, a.k_max_d_eff);
          ASSERT_EQ(b.k.size(), static_cast<size_t>(span.count));
          for (int h = 0; h < span.count; ++h) {
            ExpectSameType(b.k[h], a.k[span.begin + h]);
            ExpectSameType(b.v[h], a.v[span.begin + h]);
            EXPECT_EQ(b.bits[h].b_low, a.bits[span.begin + h].b_low);
            for (int t = 0; t < 2; ++t) {
              EXPECT_EQ(ps.at(l, h, t).lambda, whole.at(l, span.begin + h, t).lambda);
              EXPECT_EQ(ps.at(l, h, t, true).mean, whole.at(l, span.begin + h, t, true).mean);
            }
          }
        }
      }
    }
  }
  // The heads really differ, so a slice built on its own profile would not
  // reproduce the whole plan: what the slicing exists for.
  SpectralQuantConfig c;
  c.rd_allocation = false;
  const std::shared_ptr<const SqPlan> plan = SqBuildPlan(c, whole);
  bool differs = false;
  for (int h = 0; h < whole.n_kv_heads; ++h) {
    const std::shared_ptr<const SqPlan> own = SqBuildPlan(c, SqSliceProfile(whole, h, 1));
    for (int l = 0; l < whole.n_layers; ++l) {
      differs |= own->layers[l].words_k != plan->layers[l].words_k ||
                 own->layers[l].words_v != plan->layers[l].words_v || own->layers[l].k[0].width != plan->layers[l].k[h].width;
    }
  }
  EXPECT_TRUE(differs) << "test profile too uniform to exercise the layer-wide choices";
}

}  // namespace
}  // namespace kvstream
