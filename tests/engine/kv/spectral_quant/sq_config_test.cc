// SpectralQuant knobs and plans (spectral_quant.md §5, §4.2; §9 tests 2, 3,
// 4 with the spec's golden numbers and the knob errors of test 9) and the
// plan LRU (§6.4).
#include <gtest/gtest.h>

#include <numeric>

#include "engine/kv/spectral_quant/sq_config.h"
#include "engine/kv/spectral_quant/sq_plan.h"

namespace kvstream {
namespace {

const std::vector<std::string> kProfiles = {"default", "code"};

StrategyConfig Sq(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "spectral_quant";
  c.knobs = std::move(knobs);
  return c;
}

void ExpectError(std::map<std::string, KnobValue> knobs, const std::vector<std::string>& needles) {
  absl::StatusOr<SpectralQuantConfig> c = ParseSpectralQuantConfig(Sq(knobs), kProfiles);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& n : needles) EXPECT_NE(c.status().message().find(n), std::string::npos) << c.status() << " / " << n;
}

TEST(SqConfig, UnsetKnobsTakeTheSpecDefaults) {
  absl::StatusOr<SpectralQuantConfig> c = ParseSpectralQuantConfig(Sq({}), kProfiles);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->total_bits, 3);
  EXPECT_TRUE(c->use_water_fill);
  EXPECT_FALSE(c->use_qjl);
  EXPECT_DOUBLE_EQ(c->d_eff_variance, 0.90);
  EXPECT_FALSE(c->noise_bits.has_value());
  EXPECT_FALSE(c->value_noise_bits.has_value());
  EXPECT_EQ(c->ProfileName(), "default");
  EXPECT_TRUE(c->compress_decode_tokens);
  // kvstream choices (issue 11, sq_config.h): centred values, one exact sink.
  EXPECT_FALSE(c->center_keys);
  EXPECT_TRUE(c->center_values);
  EXPECT_EQ(c->num_sink_tokens, 1);
  EXPECT_TRUE(c->rd_allocation);
  EXPECT_FALSE(c->num_recent_tokens.has_value());  // unset: the window follows the request's length
}

TEST(SqConfig, RdAllocationAndRecentWindowKnobs) {
  absl::StatusOr<SpectralQuantConfig> c =
      ParseSpectralQuantConfig(Sq({{"rd_allocation", false}, {"num_recent_tokens", int64_t{0}}}), kProfiles);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->rd_allocation);
  EXPECT_EQ(c->num_recent_tokens.value_or(-1), 0);
  ExpectError({{"num_recent_tokens", int64_t{1025}}},
              {"kv_compression.spectral_quant.num_recent_tokens", "[0, 1024]", "1025"});
  ExpectError({{"rd_allocation", int64_t{1}}}, {"kv_compression.spectral_quant.rd_allocation", "true or false"});
  // rd_allocation changes the plan (legacy mode with water-fill only); the window does not.
  SpectralQuantConfig a, b = a, w = a, n = a, nb = a;
  b.rd_allocation = false;
  w.num_recent_tokens = 8;
  EXPECT_NE(a.PlanKey(), b.PlanKey());
  EXPECT_EQ(a.PlanKey(), w.PlanKey());
  n.noise_bits = 2;
  nb = n;
  nb.rd_allocation = false;
  EXPECT_EQ(n.PlanKey(), nb.PlanKey());
  EXPECT_FALSE(n.RdAllocation());
  // The window applies in mode a only.
  SpectralQuantConfig mb = a;
  mb.compress_decode_tokens = false;
  // Unset: max(32, T / 48) for a request of T tokens (32 when T is unknown).
  EXPECT_EQ(a.RecentTokens(0), 32);
  EXPECT_EQ(a.RecentTokens(736), 32);
  EXPECT_EQ(a.RecentTokens(2048), 42);
  EXPECT_EQ(a.RecentTokens(4096), 85);
  EXPECT_EQ(a.RecentTokens(8000), 166);
  EXPECT_EQ(a.RecentTokens(131072), kSqMaxRecentTokens);  // capped at the knob's range
  EXPECT_EQ(w.RecentTokens(8000), 8);  // set: fixed
  EXPECT_EQ(c->RecentTokens(8000), 0);
  EXPECT_EQ(mb.RecentTokens(8000), 0);
}

TEST(SqConfig, CentringAndSinkKnobs) {
  absl::StatusOr<SpectralQuantConfig> c = ParseSpectralQuantConfig(
      Sq({{"center_keys", true}, {"center_values", false}, {"num_sink_tokens", int64_t{64}}}), kProfiles);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->center_keys);
  EXPECT_FALSE(c->center_values);
  EXPECT_EQ(c->num_sink_tokens, 64);
  ExpectError({{"num_sink_tokens", int64_t{65}}}, {"kv_compression.spectral_quant.num_sink_tokens", "[0, 64]", "65"});
  ExpectError({{"num_sink_tokens", int64_t{-1}}}, {"kv_compression.spectral_quant.num_sink_tokens", "[0, 64]"});
  ExpectError({{"center_keys", int64_t{1}}}, {"kv_compression.spectral_quant.center_keys", "true or false"});
  ExpectError({{"center_values", 0.5}}, {"kv_compression.spectral_quant.center_values"});
  // Centring changes the plan; sinks do not.
  SpectralQuantConfig a, b = a, s = a;
  b.center_keys = true;
  s.num_sink_tokens = 8;
  EXPECT_NE(a.PlanKey(), b.PlanKey());
  EXPECT_EQ(a.PlanKey(), s.PlanKey());
}


TEST(SqConfig, EverySetKnobIsRead) {
  absl::StatusOr<SpectralQuantConfig> c = ParseSpectralQuantConfig(
      Sq({{"total_bits", int64_t{5}}, {"use_water_fill", false}, {"use_qjl", true}, {"d_eff_variance", 1.0},
          {"noise_bits", int64_t{2}}, {"value_noise_bits", int64_t{1}}, {"calibration_profile", std::string("code")},
          {"compress_decode_tokens", false}}),
      kProfiles);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->total_bits, 5);
  EXPECT_FALSE(c->use_water_fill);
  EXPECT_TRUE(c->use_qjl);
  EXPECT_DOUBLE_EQ(c->d_eff_variance, 1.0);
  EXPECT_EQ(*c->noise_bits, 2);
  EXPECT_EQ(*c->value_noise_bits, 1);
  EXPECT_EQ(c->ProfileName(), "code");
  EXPECT_FALSE(c->compress_decode_tokens);
}

TEST(SqConfig, EveryRangeIsNamedInTheError) {
  ExpectError({{"total_bits", int64_t{7}}}, {"kv_compression.spectral_quant.total_bits", "[1, 5]", "7"});
  ExpectError({{"total_bits", int64_t{0}}}, {"kv_compression.spectral_quant.total_bits", "[1, 5]"});
  ExpectError({{"d_eff_variance", 0.0}}, {"kv_compression.spectral_quant.d_eff_variance", "(0, 1]"});
  ExpectError({{"d_eff_variance", 1.5}}, {"kv_compression.spectral_quant.d_eff_variance", "(0, 1]"});
  ExpectError({{"noise_bits", int64_t{0}}}, {"kv_compression.spectral_quant.noise_bits", "[1, 8]"});
  ExpectError({{"noise_bits", int64_t{9}}}, {"kv_compression.spectral_quant.noise_bits", "[1, 8]"});
  ExpectError({{"value_noise_bits", int64_t{9}}}, {"kv_compression.spectral_quant.value_noise_bits", "[1, 8]"});
  ExpectError({{"use_water_fill", int64_t{1}}}, {"kv_compression.spectral_quant.use_water_fill", "true or false"});
  ExpectError({{"use_qjl", std::string("yes")}}, {"kv_compression.spectral_quant.use_qjl"});
  ExpectError({{"compress_decode_tokens", 0.5}}, {"kv_compression.spectral_quant.compress_decode_tokens"});
  ExpectError({{"calibration_profile", int64_t{3}}}, {"kv_compression.spectral_quant.calibration_profile"});
  ExpectError({{"bogus", int64_t{3}}}, {"kv_compression.spectral_quant", "bogus"});
}

TEST(SqConfig, UnknownProfileIsInvalidArgument) {
  ExpectError({{"calibration_profile", std::string("legal")}},
              {"kv_compression.spectral_quant.calibration_profile", "default, code", "legal"});
  absl::StatusOr<SpectralQuantConfig> c = ParseSpectralQuantConfig(Sq({}), {"code"});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

// §9 test 2.
TEST(SqPlan, WaterFillGoldenWidths) {
  const std::vector<float> a = {10, 3, 1, 0.5};
  EXPECT_EQ(SqWaterFill(a.data(), 4, 12, 1, 5), (std::vector<int>{4, 3, 3, 2}));
  EXPECT_EQ(SqWaterFill(a.data(), 4, 16, 1, 6), (std::vector<int>{5, 4, 4, 3}));
  const std::vector<float> eq = {2, 2, 2, 2};
  EXPECT_EQ(SqWaterFill(eq.data(), 4, 12, 1, 5), (std::vector<int>{3, 3, 3, 3}));
  const std::vector<float> b = {100, 1, 0.01f, 1e-4f};
  const std::vector<int> w = SqWaterFill(b.data(), 4, 12, 1, 5);
  EXPECT_EQ(w, (std::vector<int>{5, 5, 1, 1}));
  for (const auto& [lam, budget, mx] : {std::tuple{a, 12, 5}, std::tuple{a, 16, 6}, std::tuple{b, 12, 5}}) {
    const std::vector<int> x = SqWaterFill(lam.data(), 4, budget, 1, mx);
    EXPECT_EQ(std::accumulate(x.begin(), x.end(), 0), budget);
    for (int v : x) EXPECT_TRUE(v >= 1 && v <= mx);
  }
}

// §9 test 3.
TEST(SqPlan, DeffByVarianceCoverage) {
  std::vector<float> l = {8, 4, 2, 1};
  l.resize(16, 0.25f);
  EXPECT_EQ(SqDeff(l.data(), 16, 0.90), 9);
  EXPECT_EQ(SqDeff(l.data(), 16, 0.95), 13);
  std::vector<float> one(16, 0.0f);
  one[0] = 5.0f;
  EXPECT_EQ(SqDeff(one.data(), 16, 0.90), 2);
  const std::vector<float> eq(16, 1.0f);
  EXPECT_EQ(SqDeff(eq.data(), 16, 0.90), 14);  // the D-2 clamp
  const std::vector<float> zero(16, 0.0f);
  EXPECT_EQ(SqDeff(zero.data(), 16, 0.90), 2);
}

SqSpectrum Spectrum(std::vector<float> l) {
  SqSpectrum s;
  s.lambda = std::move(l);
  return s;
}

// λ giving d_eff = n at τ 0.9 for D = 128: n equal leading values of 100
// (n-1 of them hold < 90% of the energy), a tiny tail.
SqSpectrum Leading(int n, float tail) {
  std::vector<float> l(128, tail);
  for (int i = 0; i < n; ++i) l[i] = 100.0f;
  return Spectrum(l);
}

// §9 test 4.
TEST(SqPlan, BitWidthsAndSeedBytesAtDefaults) {
  SpectralQuantConfig c;
  c.rd_allocation = false;  // the spec's widths (rd_allocation: RdWidthsSpendEachTypesBudget)
  SqBits b = SqBitWidths(c, 4, 128);
  EXPECT_EQ(b.b_low, 3);
  EXPECT_EQ(b.b_high, 4);
  EXPECT_EQ(b.mse_bits_high, 3);
  EXPECT_EQ(SqBitWidths(c, 64, 128).b_low, 2);  // 2.5 -> 2, half to even
  EXPECT_EQ(SqBitWidths(c, 64, 128).b_high, 3);
  SpectralQuantConfig vn = c;
  vn.value_noise_bits = 1;  // without noise_bits: changes nothing
  EXPECT_EQ(SqBitWidths(vn, 4, 128).b_low_val, 3);
  EXPECT_EQ(vn.PlanKey(), c.PlanKey());

  SqTypePlan kp, vp;
  SqBuildHeadPlan(c, Leading(4, 0.01f), Leading(50, 6.0f), 128, &kp, &vp, &b);
  ASSERT_EQ(kp.d_eff, 4);
  ASSERT_EQ(vp.d_eff, 50);
  EXPECT_DOUBLE_EQ(kp.seed_bits / 8, 52.0);
  EXPECT_DOUBLE_EQ(vp.seed_bits / 8, 54.25);
  EXPECT_NEAR(SqSeedRatio(128, kp.seed_bits, vp.seed_bits), 4.82, 5e-3);
  EXPECT_NEAR(SqTqReferenceRatio(128), 4.92, 5e-3);
  // Physical: K 3*128 = 384 bits = 12 words (no +32 without QJL).
  EXPECT_EQ(kp.bits, 384);
  EXPECT_EQ(vp.bits, 434);
  EXPECT_EQ(kp.offset[127] + kp.width[127], 384);
}

TEST(SqPlan, NoiseModeWidths) {
  SpectralQuantConfig c;
  c.noise_bits = 2;
  c.value_noise_bits = 1;
  const SqBits b = SqBitWidths(c, 4, 128);
  EXPECT_EQ(b.b_low, 2);
  EXPECT_EQ(b.b_low_val, 1);
  EXPECT_EQ(b.b_high, 4);
  EXPECT_EQ(b.mse_bits_high, 3);
  c.value_noise_bits.reset();
  EXPECT_EQ(SqBitWidths(c, 4, 128).b_low_val, 2);
  // K = d*total + (D-d)*noise + 32, V = v_d*(total+1) + (D-v_d)*value_noise (§3).
  c.value_noise_bits = 1;
  SqTypePlan kp, vp;
  SqBits bb;
  SqBuildHeadPlan(c, Leading(4, 0.01f), Leading(50, 6.0f), 128, &kp, &vp, &bb);
  EXPECT_DOUBLE_EQ(kp.seed_bits, 4 * 3 + 124 * 2 + 32);
  EXPECT_DOUBLE_EQ(vp.seed_bits, 50 * 4 + 78 * 1);
}

TEST(SqPlan, SharedCodebookWithoutWaterFill) {
  SpectralQuantConfig c;
  c.use_water_fill = false;
  SqTypePlan kp, vp;
  SqBits b;
  std::vector<float> l(128, 0.001f);
  l[0] = 5.0f, l[1] = 4.0f, l[2] = 4.0f, l[3] = 3.0f;
  SqBuildHeadPlan(c, Spectrum(l), Leading(50, 6.0f), 128, &kp, &vp, &b);
  ASSERT_EQ(kp.d_eff, 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(kp.width[i], 3);
    EXPECT_FLOAT_EQ(kp.scale[i], std::sqrt(4.0f));  // sqrt(mean(5, 4, 4, 3))
  }
  EXPECT_EQ(vp.width[0], 4);
  // Tail sigma floored at 1/sqrt(D) (§4.2.3).
  EXPECT_FLOAT_EQ(kp.scale[100], 1.0f / std::sqrt(128.0f));
  // Seed quirk (§6.9): semantic K counted at b_high.
  EXPECT_DOUBLE_EQ(kp.seed_bits, 4 * 4 + 124 * 3 + 32);
}

TEST(SqPlan, LruKeysOnProfileAndKnobs) {
  SqProfile p;
  p.name = "default";
  p.n_layers = 2, p.n_kv_heads = 1, p.head_dim = 128;
  for (int i = 0; i < 4; ++i) p.spectra.push_back(Leading(4 + i, 0.01f));
  SqPlanCache cache(2);
  SpectralQuantConfig a, b, c;
  b.total_bits = 2;
  c.total_bits = 4;
  bool hit = true;
  auto pa = cache.Get(a, p, &hit);
  EXPECT_FALSE(hit);
  EXPECT_EQ(cache.Get(a, p, &hit), pa);
  EXPECT_TRUE(hit);
  cache.Get(b, p, &hit);
  cache.Get(c, p, &hit);  // evicts a (least recent)
  EXPECT_EQ(cache.size(), 2u);
  cache.Get(a, p, &hit);
  EXPECT_FALSE(hit);
  SpectralQuantConfig d = a;
  d.compress_decode_tokens = false;  // not a plan knob
  cache.Get(d, p, &hit);
  EXPECT_TRUE(hit);
  EXPECT_EQ(pa->layers.size(), 2u);
  EXPECT_EQ(pa->layers[0].words_k, 12);
}

// [kvstream choice, issue 11] rd_allocation: greedy rate-distortion widths
// over the unit Lloyd-Max MSE table, each in [1, 8].
TEST(SqPlan, RdWidthsSpendEachTypesBudget) {
  EXPECT_NEAR(SqUnitMse(1), 0.3634, 1e-4);
  EXPECT_NEAR(SqUnitMse(3), 0.03455, 1e-5);
  EXPECT_NEAR(SqUnitMse(8), 6.374e-5, 1e-7);
  EXPECT_EQ(SqUnitMse(0), 1.0);
  const std::vector<float> a = {10, 3, 1, 0.5}, eq = {1, 1, 1, 1}, b = {100, 1, 0.01f, 1e-4f};
  EXPECT_EQ(SqRdWidths(a.data(), 4, 12), (std::vector<int>{4, 3, 3, 2}));
  EXPECT_EQ(SqRdWidths(a.data(), 4, 16), (std::vector<int>{5, 4, 4, 3}));
  EXPECT_EQ(SqRdWidths(eq.data(), 4, 12), (std::vector<int>{3, 3, 3, 3}));
  EXPECT_EQ(SqRdWidths(b.data(), 4, 12), (std::vector<int>{7, 3, 1, 1}));
  EXPECT_EQ(SqRdWidths(b.data(), 4, 40), (std::vector<int>{8, 8, 8, 8}));  // capped at 8
  // Defaults at D = 128: K 3 * 128 bits, V 3.5 * 128, every dim its own sigma.
  SpectralQuantConfig c;
  SqTypePlan kp, vp;
  SqBits bits;
  SqBuildHeadPlan(c, Leading(4, 0.01f), Leading(50, 6.0f), 128, &kp, &vp, &bits);
  EXPECT_EQ(kp.d_eff, 4);
  EXPECT_EQ(vp.d_eff, 50);
  EXPECT_EQ(bits.b_low, 3);  // still computed for the report
  EXPECT_EQ(kp.bits, 384);
  EXPECT_EQ(vp.bits, 448);
  EXPECT_EQ(kp.offset[127] + kp.width[127], 384);
  EXPECT_DOUBLE_EQ(kp.seed_bits, 384 + 32);
  EXPECT_DOUBLE_EQ(vp.seed_bits, 448);
  for (int i = 0; i < 128; ++i) {
    EXPECT_GE(kp.width[i], 1);
    EXPECT_LE(kp.width[i], 8);
    if (i > 0) {
      EXPECT_LE(kp.width[i], kp.width[i - 1]);  // descending lambda
    }
  }
  EXPECT_GT(kp.width[0], kp.width[127]);
  SpectralQuantConfig off = c;
  off.rd_allocation = false;
  SqTypePlan ks, vs;
  SqBuildHeadPlan(off, Leading(4, 0.01f), Leading(50, 6.0f), 128, &ks, &vs, &bits);
  EXPECT_EQ(vs.bits, 434);  // the spec's widths
}

// [kvstream choice] Legacy b_low is set for every head of a layer by the
// layer's smallest key d_eff: the records are padded to the widest head.
TEST(SqPlan, LayerBitsRuleGivesEveryHeadTheWidestHeadsWidths) {
  SqProfile p;
  p.n_layers = 1, p.n_kv_heads = 2, p.head_dim = 128;
  std::vector<float> narrow(128, 1e-4f), wide(128, 1.0f);
  for (int i = 0; i < 4; ++i) narrow[i] = 100.0f;  // d_eff 4 -> b_low 3
  SqSpectrum n = Spectrum(narrow), w = Spectrum(wide);  // flat: d_eff 116 -> b_low 2 alone
  p.spectra = {n, n, w, w};
  SpectralQuantConfig c;
  EXPECT_EQ(SqLayerBitsDeff(c, p, 0, false), 4);
  std::shared_ptr<const SqPlan> plan = SqBuildPlan(c, p);
  EXPECT_EQ(plan->layers[0].bits[0].b_low, 3);
  EXPECT_EQ(plan->layers[0].bits[1].b_low, 3);  // alone it would be 2 (§4.2.2)
  SqTypePlan kp, vp;
  SqBits b;
  SqBuildHeadPlan(c, w, w, 128, &kp, &vp, &b);
  EXPECT_EQ(b.b_low, 2);
  EXPECT_LE(plan->layers[0].words_k, (3 * 128 + 31) / 32);
}

}  // namespace
}  // namespace kvstream
