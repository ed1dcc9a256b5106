// SamGateSequenceCache on synthetic geometries (CPU twins): exact prefill
// (C1), ring init and decode against a sliding-window (+ sinks) reference
// over bf16-rounded K/V (§9 test 6b at the attention level), resident
// positions (§9 test 2), bytes flat in context and equal to the §3 formula,
// the seed's 4,718,592 B in compat mode, the report (§8), refusals.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "kernels/sam_gate/sam_gate.h"
#include "tests/engine/kv/sam_gate/sam_probe_ref.h"

namespace kvstream {
namespace {

KvGeometry Geo(int64_t layers = 2, int64_t h = 4, int64_t hk = 2, int64_t d = 64) {
  KvGeometry g;
  g.n_layers = layers;
  g.n_heads = h;
  g.n_kv_heads = hk;
  g.head_dim = d;
  g.context_length = 32768;
  g.dtype = at::kFloat;
  return g;
}

StrategyConfig Sam(std::map<std::string, KnobValue> knobs, bool fixed = true) {
  StrategyConfig c;
  c.strategy = "sam_gate";
  if (fixed) {
    knobs.emplace("f_flat_max", 0.0);
    knobs.emplace("f_obs_min", 0.0);
  }
  c.knobs = std::move(knobs);
  return c;
}

// Drives one sequence through prefill (in chunks) and decode steps, keeping
// the full K/V to build references.
struct Driver {
  KvGeometry g;
  std::unique_ptr<SequenceCache> cache;
  std::vector<at::Tensor> all_k, all_v;  // per layer [Hk, t, D]
  int64_t seen = 0;

  Driver(const KvGeometry& geo, const StrategyConfig& cfg) : g(geo) {
    SamGateStrategy s(g);
    auto c = s.Open(cfg);
    EXPECT_TRUE(c.ok()) << c.status();
    cache = std::move(*c);
    all_k.resize(g.n_layers);
    all_v.resize(g.n_layers);
  }
  SamGateSequenceCache* sam() { return static_cast<SamGateSequenceCache*>(cache.get()); }

  // Returns the last layer's outputs [H, n, D] plus, per layer, the inputs.
  std::vector<at::Tensor> Step(int64_t n, bool prompt, bool last, std::vector<at::Tensor>* qs = nullptr) {
    std::vector<at::Tensor> outs;
    SeqStep st{seen, n, prompt, last};
    for (int64_t l = 0; l < g.n_layers; ++l) {
      at::Tensor q = at::randn({g.n_heads, n, g.head_dim});
      at::Tensor k = at::randn({g.n_kv_heads, n, g.head_dim});
      at::Tensor v = at::randn({g.n_kv_heads, n, g.head_dim});
      all_k[l] = seen == 0 ? k : at::cat({all_k[l], k}, 1);
      all_v[l] = seen == 0 ? v : at::cat({all_v[l], v}, 1);
      auto o = cache->Forward(l, q, k, v, st, StepContext{});
      EXPECT_TRUE(o.ok()) << o.status();
      outs.push_back(*o);
      if (qs) qs->push_back(q);
    }
    seen += n;
    return outs;
  }
};

at::Tensor Bf16(const at::Tensor& x) { return x.to(at::kBFloat16).to(at::kFloat); }

// Decode reference: positions {p < S} U {p >= len - W} of all_k/all_v (bf16-rounded).
at::Tensor WindowRef(const at::Tensor& q, const at::Tensor& K, const at::Tensor& V, int64_t S, int64_t W) {
  const int64_t len = K.size(1);
  std::vector<int64_t> keep;
  for (int64_t p = 0; p < len; ++p)
    if (p < S || p >= len - W) keep.push_back(p);
  at::Tensor idx = at::tensor(keep, at::kLong);
  return CausalGqaAttention(q, Bf16(K.index_select(1, idx)), Bf16(V.index_select(1, idx)), 0);
}

TEST(SamGateCache, ValidatesKnobsAndGeometry) {
  SamGateStrategy s(Geo());
  EXPECT_TRUE(s.Validate(Sam({}, false)).ok());
  EXPECT_TRUE(s.Validate(Sam({{"calibrate", true}})).ok());
  absl::Status st = s.Validate(Sam({{"tau", 3.0}}));
  EXPECT_NE(st.message().find("kv_compression.sam_gate.tau"), std::string::npos) << st;
  SamGateStrategy odd(Geo(2, 4, 2, 96));
  EXPECT_FALSE(odd.Validate(Sam({{"quant_group_size", int64_t{16}}})).ok());
}

TEST(SamGateCache, PrefillIsExactAndDecodeMatchesTheWindowReference) {
  at::manual_seed(1);
  for (int64_t S : {0, 4}) {
    for (int64_t W : {8, 200}) {
      SCOPED_TRACE("S=" + std::to_string(S) + " W=" + std::to_string(W));
      const KvGeometry g = Geo();
      Driver d(g, Sam({{"max_ctx_obs", W}, {"num_sink_tokens", S}}));
      std::vector<at::Tensor> qs;
      auto outs = d.Step(20, true, false, &qs);
      for (int64_t l = 0; l < g.n_layers; ++l)
        EXPECT_TRUE(at::equal(outs[l], CausalGqaAttention(qs[l], d.all_k[l], d.all_v[l], 0)));
      qs.clear();
      outs = d.Step(17, true, true, &qs);
      for (int64_t l = 0; l < g.n_layers; ++l) {
        EXPECT_TRUE(at::allclose(outs[l], CausalGqaAttention(qs[l], d.all_k[l], d.all_v[l], 20), 1e-5, 1e-6));
        EXPECT_TRUE(d.sam()->ring_built(l));
        EXPECT_EQ(d.sam()->n_valid(l), std::min<int64_t>(37, W + S));
      }
      for (int step = 0; step < 30; ++step) {
        qs.clear();
        outs = d.Step(1, false, false, &qs);
        for (int64_t l = 0; l < g.n_layers; ++l) {
          at::Tensor ref = WindowRef(qs[l], d.all_k[l], d.all_v[l], S, W);
          EXPECT_TRUE(at::allclose(outs[l], ref, 1e-4, 1e-5))
              << "step " << step << " layer " << l << " max diff " << (outs[l] - ref).abs().max().item<float>();
          // Resident positions: [0, min(S, len)) U the last W (§9 test 2).
          std::set<int32_t> got;
          for (int32_t p : d.sam()->SlotPositions(l))
            if (p >= 0) got.insert(p);
          std::set<int32_t> want;
          for (int64_t p = 0; p < d.seen; ++p)
            if (SamResident(p, d.seen, static_cast<int>(S), static_cast<int>(W))) want.insert(static_cast<int32_t>(p));
          EXPECT_EQ(got, want);
        }
      }
    }
  }
}

TEST(SamGateCache, QuantizedRingsStayCloseToTheReference) {
  at::manual_seed(2);
  for (bool packed : {true, false}) {
    for (int64_t bits : {8, 4}) {
      SCOPED_TRACE(std::string(packed ? "packed" : "compat") + " bits=" + std::to_string(bits));
      const KvGeometry g = Geo();
      Driver d(g, Sam({{"obs_bits", bits}, {"max_ctx_obs", int64_t{16}}, {"packed_storage", packed}}));
      d.Step(40, true, true);
      EXPECT_EQ(d.sam()->plan(0).bits, packed ? bits : 16);
      EXPECT_EQ(d.sam()->plan(0).fake_quant_bits, packed ? 0 : bits);
      std::vector<at::Tensor> qs;
      auto outs = d.Step(1, false, false, &qs);
      at::Tensor ref = WindowRef(qs[0], d.all_k[0], d.all_v[0], 0, 16);
      const double tol = bits == 8 ? 0.05 : 0.6;
      EXPECT_LT((outs[0] - ref).abs().max().item<float>(), tol);
    }
  }
}

int64_t ExpectedRingBytes(const KvGeometry& g, int bits, int W, int S, int gs) {
  return g.n_layers * (SamRingKvBytes(static_cast<int>(g.n_kv_heads), W + S, static_cast<int>(g.head_dim), bits, gs) +
                       SamRingMetaBytes(static_cast<int>(g.n_kv_heads), W + S) + 4 * g.n_heads);
}

TEST(SamGateCache, BytesAreFlatInContextAndEqualTheFormula) {
  at::manual_seed(3);
  const KvGeometry g = Geo(2, 4, 2, 64);
  for (int64_t bits : {16, 8, 4}) {
    SCOPED_TRACE("bits=" + std::to_string(bits));
    const StrategyConfig cfg = Sam({{"obs_bits", bits}, {"num_sink_tokens", int64_t{4}}});
    SamGateStrategy s(g);
    std::vector<int64_t> bytes;
    for (int64_t T : {100, 10000}) {
      Driver d(g, cfg);
      const int64_t chunk = 1000;
      for (int64_t done = 0; done < T; done += std::min(chunk, T - done))
        d.Step(std::min(chunk, T - done), true, done + std::min(chunk, T - done) == T);
      for (int i = 0; i < 3; ++i) d.Step(1, false, false);
      const CacheReport r = d.cache->Report();
      EXPECT_EQ(r.kv_bytes_device, d.cache->BytesHeld());
      EXPECT_EQ(r.kv_bytes_device, ExpectedRingBytes(g, static_cast<int>(bits), 128, 4, 32));
      EXPECT_EQ(r.tokens_seen, T + 3);
      EXPECT_EQ(r.tokens_held, std::min<int64_t>(T + 3, 132));
      EXPECT_LE(r.peak_kv_bytes, s.PredictBytes(cfg, T, 3));
      // PredictBytes = staging of the prompt + the largest ring per layer.
      const int64_t staging = 2 * g.n_layers * g.n_kv_heads * g.head_dim * 4 * T;
      EXPECT_GE(s.PredictBytes(cfg, T, 3) - staging, r.kv_bytes_device);
      bytes.push_back(r.kv_bytes_device);
    }
    EXPECT_EQ(bytes[0], bytes[1]);  // O(1) in context (§9 test 2)
  }
}

TEST(SamGateCache, PredictBytesIsTheStagingPlusTheLargestRing) {
  const KvGeometry g = Geo(3, 8, 4, 128);
  SamGateStrategy s(g);
  const StrategyConfig cfg = Sam({});  // OBSTRUCTED 16-bit, W=128, all groups = the largest ring
  const int64_t staging = 2 * 3 * 4 * 128 * 4 * 500;
  EXPECT_EQ(s.PredictBytes(cfg, 500, 64), staging + ExpectedRingBytes(g, 16, 128, 0, 32));
  // A FLAT window larger than the OBSTRUCTED one wins.
  const StrategyConfig big = Sam({{"max_ctx_flat", int64_t{4096}}, {"flat_bits", int64_t{16}}});
  EXPECT_GT(s.PredictBytes(big, 500, 64), s.PredictBytes(cfg, 500, 64));
}

TEST(SamGateCache, SeedReproductionCompatModeQwenShape) {
  // Qwen2.5-3B shape (L=36, H=16, Hk=2, d=128), 16-bit compat ring, W=128:
  // sum_l kv_bytes_l = 4,718,592 B (the seed's 4608 KiB, §9 test 7).
  at::manual_seed(4);
  const KvGeometry g = Geo(36, 16, 2, 128);
  Driver d(g, Sam({{"packed_storage", false}}));
  d.Step(200, true, true);
  d.Step(1, false, false);
  const CacheReport r = d.cache->Report();
  int64_t kv = 0;
  for (const auto& l : r.layers) kv += l.bytes - static_cast<int64_t>(4 * 128 + 4 * 2 + 4 * 16);
  EXPECT_EQ(kv, 4718592);
  EXPECT_EQ(r.kv_bytes_device, 4718592 + 36 * (4 * 128 + 4 * 2 + 4 * 16));
}

TEST(SamGateCache, ReportFollowsSection8) {
  at::manual_seed(5);
  const KvGeometry g = Geo();
  Driver d(g, Sam({{"max_ctx_obs", int64_t{16}}, {"num_sink_tokens", int64_t{2}}, {"obs_bits", int64_t{8}}}));
  d.Step(5, true, true);  // P = 5 < 8: probe skipped (§4 step 2)
  d.Step(1, false, false);
  const CacheReport r = d.cache->Report();
  EXPECT_EQ(r.strategy, "sam_gate");
  EXPECT_EQ(r.tokens_seen, 6);
  EXPECT_EQ(r.tokens_held, 6);
  EXPECT_EQ(r.dense_equivalent_bytes, 6 * g.DenseBytesPerToken16());
  EXPECT_EQ(r.stats.at("n_obs"), 2);
  EXPECT_EQ(r.stats.at("n_flat"), 0);
  EXPECT_EQ(r.stats.at("n_probe_skipped"), 2);
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].detail, "OBSTRUCTED");
  EXPECT_EQ(r.layers[0].stats.at("bits"), 8);
  EXPECT_EQ(r.layers[0].stats.at("capacity"), 18);
  EXPECT_EQ(r.layers[0].stats.at("groups_kept"), 2);
  EXPECT_EQ(r.layers[0].stats.at("heads_kept_frac"), 1.0);
  EXPECT_EQ(r.layers[0].stats.at("kept_group_mask"), 3.0);
  EXPECT_GT(r.compression_ratio, 0.0);
}

TEST(SamGateCache, GroupSelectionRoundsUpAndBreaksTiesLow) {
  EXPECT_EQ(SamSelectGroups(0.5, {0, 0}), (std::vector<int32_t>{0}));
  EXPECT_EQ(SamSelectGroups(0.75, {0, 0}), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(SamSelectGroups(0.5, std::vector<double>(8, 0.0)), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(SamSelectGroups(0.5, {0.1, 0.9, 0.3, 0.9}), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(SamSelectGroups(0.25, {0.5, 0.9, 0.9, 0.1}), (std::vector<int32_t>{1}));
}

// Exact mode (num_probes = 0): the report's f and e equal a reference built
// from the staged window with at:: ops (§4 step 2), per layer.
TEST(SamGateProbe, ExactModeMatchesTheClosedForm) {
  at::manual_seed(6);
  const KvGeometry g = Geo(2, 4, 2, 64);
  Driver d(g, Sam({{"num_probes", int64_t{0}}, {"probe_window", int64_t{16}}, {"tau", 0.0}}, false));
  std::vector<at::Tensor> qs;
  d.Step(40, true, true, &qs);
  const CacheReport r = d.cache->Report();
  for (int64_t l = 0; l < g.n_layers; ++l) {
    const ProbeRef ref = ExactProbeRef(qs[l].narrow(1, 24, 16), d.all_k[l].narrow(1, 24, 16));
    EXPECT_NEAR(r.layers[l].stats.at("f"), ref.f, 1e-4 * std::max(1.0, ref.f)) << "layer " << l;
    EXPECT_NEAR(r.layers[l].stats.at("tr_delta"), ref.tr_delta, 1e-4 * std::max(1.0, ref.tr_delta));
    EXPECT_EQ(r.layers[l].stats.at("probe_P"), 16);
    EXPECT_EQ(r.layers[l].detail, SamRegimeName(SamGateConfig{}.Classify(ref.f)));
  }
}

// Hutchinson with many probes is near the exact f; the same seed twice gives
// the same f (determinism, §9 test 6c).
TEST(SamGateProbe, HutchinsonIsNearExactAndDeterministic) {
  const KvGeometry g = Geo(1, 4, 2, 64);
  auto run = [&](int64_t K, uint64_t seed) {
    at::manual_seed(7);
    Driver d(g, Sam({{"num_probes", K}, {"probe_seed", static_cast<int64_t>(seed)}, {"tau", 0.0}}, false));
    d.Step(64, true, true);
    return d.cache->Report().layers[0].stats.at("f");
  };
  const double exact = run(0, 0);
  EXPECT_EQ(run(8, 3), run(8, 3));
  double mean = 0.0;
  for (uint64_t s = 0; s < 8; ++s) mean += run(64, s) / 8.0;
  EXPECT_NEAR(mean, exact, 0.15 * exact + 1e-6);
}

// Forced regimes through the thresholds: FLAT keeps the top-scoring half of
// the groups at 4 bits and W=64; dropped heads give v_t (SELF) or 0 (ZERO);
// TRANSITION keeps ceil(0.75*Hk) groups at 8 bits.
TEST(SamGateProbe, ForcedRegimesSelectGroupsAndDropHeads) {
  const KvGeometry g = Geo(1, 8, 4, 64);
  for (const char* mode : {"SELF", "ZERO"}) {
    SCOPED_TRACE(mode);
    at::manual_seed(8);
    Driver d(g, Sam({{"f_flat_max", 1e30}, {"f_obs_min", 1e30}, {"dropped_head_mode", std::string(mode)}}, false));
    d.Step(80, true, true);
    const SamLayerPlan& p = d.sam()->plan(0);
    EXPECT_EQ(p.regime, SamRegime::kFlat);
    EXPECT_EQ(p.bits, 4);
    EXPECT_EQ(p.window, 64);
    ASSERT_EQ(p.kept.size(), 2u);
    const CacheReport r0 = d.cache->Report();
    EXPECT_EQ(r0.layers[0].detail, "FLAT");
    EXPECT_EQ(r0.stats.at("n_flat"), 1);
    EXPECT_EQ(r0.layers[0].stats.at("heads_kept_frac"), 0.5);
    std::vector<at::Tensor> qs;
    auto outs = d.Step(1, false, false, &qs);
    const at::Tensor vt = d.all_v[0].narrow(1, 80, 1);  // [Hk, 1, D]
    for (int64_t h = 0; h < 8; ++h) {
      const int32_t grp = static_cast<int32_t>(h / 2);
      if (std::find(p.kept.begin(), p.kept.end(), grp) != p.kept.end()) continue;
      at::Tensor want = std::string(mode) == "SELF" ? vt[grp] : at::zeros_like(vt[grp]);
      EXPECT_TRUE(at::equal(outs[0][h], want)) << "dropped head " << h;
    }
  }
  at::manual_seed(9);
  Driver t(g, Sam({{"f_flat_max", 0.0}, {"f_obs_min", 1e30}}, false));
  t.Step(80, true, true);
  EXPECT_EQ(t.sam()->plan(0).regime, SamRegime::kTransition);
  EXPECT_EQ(t.sam()->plan(0).bits, 8);
  EXPECT_EQ(t.sam()->plan(0).kept.size(), 3u);
  EXPECT_EQ(t.cache->Report().layers[0].detail, "TRANSITION");
}

TEST(SamGateProbe, CalibrateReportsTheProposalAndAppliesObstructed) {
  at::manual_seed(10);
  const KvGeometry g = Geo();
  Driver d(g, Sam({{"f_flat_max", 1e30}, {"f_obs_min", 1e30}, {"calibrate", true}}, false));
  d.Step(30, true, true);
  d.Step(1, false, false);
  const CacheReport r = d.cache->Report();
  EXPECT_EQ(r.stats.at("calibrate"), 1.0);
  EXPECT_EQ(r.stats.at("n_obs"), 2);
  for (const auto& l : r.layers) {
    EXPECT_EQ(l.detail, "OBSTRUCTED(proposed=FLAT)");
    EXPECT_EQ(l.stats.at("bits"), 16);
    EXPECT_FALSE(std::isnan(l.stats.at("f")));
  }
  EXPECT_FALSE(std::isnan(r.stats.at("f_median")));
}

}  // namespace
}  // namespace kvstream
