// SpectralQuantSequenceCache on the CPU twins without a model:
//  - prefill = exact attention over the chunk + reconstructions of earlier
//    chunks; decode (mode a) = attention over reconstructions only (K3 + the
//    engine's un-rotation, then dense softmax), within 1e-4 (fp32 CPU);
//  - mode b keeps generated tokens dense and exact;
//  - the recent window (num_recent_tokens, mode a) holds the last R
//    positions exact in bf16 and codes what leaves it, oldest first;
//  - the first num_sink_tokens positions stay exact (sq_config.h), and
//    centred plans (center_keys / center_values) give the same attention
//    over the reconstructions (Reconstruct adds the means back);
//  - bytes: kv_bytes_device = allocated = PredictBytes (records padded to
//    the layer's widest head, r_norm + sign words with QJL);
//  - synthetic models self-calibrate (bytes within the prediction).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_strategy.h"

namespace kvstream {
namespace {

KvGeometry Geometry(int64_t D, int64_t H, int64_t Hkv) {
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = H;
  g.n_kv_heads = Hkv;
  g.head_dim = D;
  g.context_length = 4096;
  return g;
}

std::shared_ptr<const SqProfile> RandomProfile(int64_t D, int64_t Hkv) {
  SqCovariance cov(2, Hkv, D);
  at::Tensor scale = at::pow(2.0, -at::arange(D, at::kFloat) / 6.0);
  // Offsets give the centred spectra a mean to remove.
  for (int64_t l = 0; l < 2; ++l) {
    cov.Add(l, at::randn({Hkv, 400, D}) * scale + 0.3, at::randn({Hkv, 400, D}) * scale.sqrt() - 0.2);
  }
  auto p = cov.Finish("default", 0);
  EXPECT_TRUE(p.ok());
  return std::make_shared<const SqProfile>(std::move(*p));
}

double Rel(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm().clamp_min(1e-12)).item<double>();
}

struct Seq {
  std::vector<at::Tensor> k, v;  // per layer [Hkv, T, D] exact
};

// check_values false: QJL adds a score correction the plain reference lacks.
void RunAndCheck(SpectralQuantStrategy& s, const KvGeometry& g, std::map<std::string, KnobValue> knobs,
                 bool expect_exact_predict, bool check_values = true) {
  StrategyConfig c;
  c.strategy = "spectral_quant";
  c.knobs = knobs;
  const std::vector<int64_t> steps = {40, 57, 1, 1, 1};
  c.max_tokens = 100;
  auto opened = s.Open(c);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto* cache = static_cast<SpectralQuantSequenceCache*>(opened->get());
  const bool dense_tail = knobs.count("compress_decode_tokens") != 0;
  // The recent window (mode a only; sq_config.h default 32).
  const int64_t recent =
      dense_tail ? 0 : (knobs.count("num_recent_tokens") ? std::get<int64_t>(knobs.at("num_recent_tokens")) : 32);
  Seq seq;
  seq.k.resize(g.n_layers);
  seq.v.resize(g.n_layers);
  int64_t pos = 0;
  const at::Tensor scale = at::pow(2.0, -at::arange(g.head_dim, at::kFloat) / 12.0);
  for (size_t st = 0; st < steps.size(); ++st) {
    const int64_t n = steps[st];
    SeqStep step;
    step.start_pos = pos;
    step.n_new = n;
    step.is_prompt = st < 2;
    step.last_prompt_chunk = st == 1;
    for (int64_t l = 0; l < g.n_layers; ++l) {
      at::Tensor q = at::randn({g.n_heads, n, g.head_dim});
      at::Tensor k = at::randn({g.n_kv_heads, n, g.head_dim}) * scale, v = at::randn({g.n_kv_heads, n, g.head_dim});
      // Reconstructions of what the cache held before this step.
      auto kh = cache->Reconstruct(l, 0), vh = cache->Reconstruct(l, 1);
      ASSERT_TRUE(kh.ok() && vh.ok());
      const int64_t held_comp = cache->compressed(l), held_sink = cache->sinks(l);
      auto out = cache->Forward(l, q, k, v, step, StepContext());
      ASSERT_TRUE(out.ok()) << out.status();
      // Positions: sinks (exact), records (the ones held before a prompt
      // step; after a decode step, which may code the token leaving the
      // recent window, or in mode a without a window the new token itself),
      // then the exact rest: the recent window (bf16) / dense tail and the chunk.
      const at::Tensor all_k = seq.k[l].defined() ? at::cat({seq.k[l], k}, 1) : k;
      const at::Tensor all_v = seq.v[l].defined() ? at::cat({seq.v[l], v}, 1) : v;
      at::Tensor kr = *kh, vr = *vh;
      int64_t rest = held_sink + held_comp;
      if (!step.is_prompt) {
        auto k2 = cache->Reconstruct(l, 0), v2 = cache->Reconstruct(l, 1);
        ASSERT_TRUE(k2.ok() && v2.ok());
        kr = *k2;
        vr = *v2;
        rest = cache->sinks(l) + cache->compressed(l);
      }
      const int64_t s_used = step.is_prompt ? held_sink : cache->sinks(l);
      at::Tensor tail_k = all_k.narrow(1, rest, all_k.size(1) - rest).clone();
      at::Tensor tail_v = all_v.narrow(1, rest, all_v.size(1) - rest).clone();
      if (recent > 0) {
        // The window is held in bf16; a prompt chunk itself is exact.
        const int64_t w = step.is_prompt ? pos - rest : tail_k.size(1);
        tail_k.narrow(1, 0, w).copy_(tail_k.narrow(1, 0, w).to(at::kBFloat16).to(at::kFloat));
        tail_v.narrow(1, 0, w).copy_(tail_v.narrow(1, 0, w).to(at::kBFloat16).to(at::kFloat));
      }
      const at::Tensor keys = at::cat({all_k.narrow(1, 0, s_used), kr, tail_k}, 1);
      const at::Tensor values = at::cat({all_v.narrow(1, 0, s_used), vr, tail_v}, 1);
      at::Tensor want = CausalGqaAttention(q, keys, values, pos);
      if (check_values || (step.is_prompt && held_comp == 0)) {
        EXPECT_LT(Rel(*out, want), 1e-4) << "step " << st << " layer " << l;
      } else {
        EXPECT_LT(Rel(*out, want), 0.5) << "step " << st << " layer " << l;  // QJL: near, not equal
      }
      seq.k[l] = seq.k[l].defined() ? at::cat({seq.k[l], k}, 1) : k;
      seq.v[l] = seq.v[l].defined() ? at::cat({seq.v[l], v}, 1) : v;
    }
    pos += n;
  }
  const int64_t sinks = knobs.count("num_sink_tokens") ? std::get<int64_t>(knobs.at("num_sink_tokens")) : 1;
  for (int64_t l = 0; l < g.n_layers; ++l) {
    EXPECT_EQ(cache->sinks(l), sinks);
    const int64_t window = std::min<int64_t>(recent, 100 - sinks);
    EXPECT_EQ(cache->compressed(l), (dense_tail ? 97 : 100) - sinks - window);
    EXPECT_EQ(cache->dense_tail(l), dense_tail ? 3 : window);
  }
  const CacheReport r = cache->Report();
  EXPECT_EQ(r.kv_bytes_device, cache->BytesHeld());
  EXPECT_EQ(r.tokens_seen, 100);
  EXPECT_EQ(r.tokens_held, 100);
  const int64_t predicted = s.PredictBytes(c, 97, 3);
  if (expect_exact_predict) {
    EXPECT_EQ(r.kv_bytes_device, predicted);
  } else {
    EXPECT_LE(r.kv_bytes_device, predicted);
  }
}

TEST(SqCache, PrefillExactDecodeOverReconstructions) {
  at::manual_seed(1);
  const KvGeometry g = Geometry(64, 6, 2);
  SpectralQuantStrategy s(g, {RandomProfile(64, 2)});
  RunAndCheck(s, g, {}, true);
}

TEST(SqCache, DenseTailKeepsDecodeTokensExact) {
  at::manual_seed(2);
  const KvGeometry g = Geometry(128, 4, 4);
  SpectralQuantStrategy s(g, {RandomProfile(128, 4)});
  RunAndCheck(s, g, {{"compress_decode_tokens", false}}, true);
}

TEST(SqCache, NoiseModeAndSharedCodebook) {
  at::manual_seed(3);
  const KvGeometry g = Geometry(64, 6, 2);
  SpectralQuantStrategy s(g, {RandomProfile(64, 2)});
  RunAndCheck(s, g, {{"noise_bits", int64_t{1}}, {"use_water_fill", false}, {"total_bits", int64_t{4}}}, true);
}

// The spec's configuration: uncentred, every token coded.
TEST(SqCache, SpecConfigurationCodesEveryToken) {
  at::manual_seed(6);
  const KvGeometry g = Geometry(64, 6, 2);
  SpectralQuantStrategy s(g, {RandomProfile(64, 2)});
  RunAndCheck(s, g, {{"num_sink_tokens", int64_t{0}}, {"center_values", false}}, true);
}

// Centred keys and values; 64 sinks span both prompt chunks (40 + 24).
TEST(SqCache, CentredKeysAndSinksAcrossChunks) {
  at::manual_seed(7);
  const KvGeometry g = Geometry(64, 6, 2);
  SpectralQuantStrategy s(g, {RandomProfile(64, 2)});
  RunAndCheck(s, g, {{"num_sink_tokens", int64_t{64}}, {"center_keys", true}}, true);
  RunAndCheck(s, g, {{"num_sink_tokens", int64_t{64}}, {"center_keys", true}, {"compress_decode_tokens", false}}, true);
}

// Without the recent window (the spec's mode a: each token coded before it
// is attended) and with a window the prompt chunks overflow (40 + 57 > 48).
TEST(SqCache, RecentWindowSizes) {
  at::manual_seed(8);
  const KvGeometry g = Geometry(64, 6, 2);
  SpectralQuantStrategy s(g, {RandomProfile(64, 2)});
  RunAndCheck(s, g, {{"num_recent_tokens", int64_t{0}}}, true);
  RunAndCheck(s, g, {{"num_recent_tokens", int64_t{48}}}, true);
  RunAndCheck(s, g, {{"num_recent_tokens", int64_t{1}}, {"num_sink_tokens", int64_t{0}}}, true);
  RunAndCheck(s, g, {{"num_recent_tokens", int64_t{200}}}, true);
  RunAndCheck(s, g, {{"num_recent_tokens", int64_t{8}}, {"rd_allocation", false}}, true);
}

// Unset num_recent_tokens: the window is max(32, T / 48) of the request's
// T = prompt + max_new tokens (sq_config.h), in the cache and in PredictBytes.
// The window is a ring whose entries keep their slots. A request that goes
// past its max_tokens (its window first sized for fewer than R slots) grows
// the window to R slots with every entry where it was: the same outputs as
// the request without a size hint.
TEST(SqCache, WindowOutgrowingAShortRequestKeepsItsEntries) {
  at::manual_seed(1);
  KvGeometry g;
  g.n_layers = 1, g.n_heads = 4, g.n_kv_heads = 2, g.head_dim = 64, g.context_length = 4096;
  SqCovariance cov(1, 2, 64);
  const at::Tensor scale = at::pow(2.0, -at::arange(64, at::kFloat) / 6.0);
  cov.Add(0, at::randn({2, 400, 64}) * scale, at::randn({2, 400, 64}));
  auto profile = cov.Finish("default", 0);
  ASSERT_TRUE(profile.ok()) << profile.status();
  SpectralQuantStrategy s(g, {std::make_shared<const SqProfile>(std::move(*profile))});
  const std::vector<int64_t> chunks = {15, 25, 1, 1};
  std::vector<std::vector<at::Tensor>> in;
  for (int64_t n : chunks) in.push_back({at::randn({4, n, 64}), at::randn({2, n, 64}), at::randn({2, n, 64})});
  std::vector<at::Tensor> outs[2];
  for (int run = 0; run < 2; ++run) {
    StrategyConfig c;
    c.strategy = "spectral_quant";
    c.knobs = {{"num_recent_tokens", int64_t{32}}};
    c.max_tokens = run == 0 ? 0 : 20;  // run 1: a window of 19 slots first, then more tokens than that
    auto cache = s.Open(c);
    ASSERT_TRUE(cache.ok()) << cache.status();
    int64_t pos = 0;
    for (size_t i = 0; i < chunks.size(); ++i) {
      SeqStep st;
      st.start_pos = pos, st.n_new = chunks[i], st.is_prompt = i < 2, st.last_prompt_chunk = i == 1;
      auto o = (*cache)->Forward(0, in[i][0], in[i][1], in[i][2], st, StepContext());
      ASSERT_TRUE(o.ok()) << o.status();
      ASSERT_TRUE((*cache)->EndStep(st, StepContext()).ok());
      outs[run].push_back(*o);
      pos += chunks[i];
    }
    auto* sq = static_cast<SpectralQuantSequenceCache*>(cache->get());
    EXPECT_EQ(sq->dense_tail(0), 32);
    EXPECT_EQ(sq->compressed(0), pos - 1 - 32);
  }
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_TRUE(at::allclose(outs[0][i], outs[1][i], 1e-5, 1e-6))
        << "step " << i << ": max |diff| " << (outs[0][i] - outs[1][i]).abs().max().item<double>();
  }
}

TEST(SqCache, DefaultWindowFollowsRequestLength) {
  at::manual_seed(9);
  const KvGeometry g = Geometry(64, 6, 2);
  SpectralQuantStrategy s(g, {RandomProfile(64, 2)});
  StrategyConfig c, fixed100, fixed32;
  c.strategy = fixed100.strategy = fixed32.strategy = "spectral_quant";
  fixed100.knobs = {{"num_recent_tokens", int64_t{100}}};
  fixed32.knobs = {{"num_recent_tokens", int64_t{32}}};
  EXPECT_EQ(s.PredictBytes(c, 4700, 100), s.PredictBytes(fixed100, 4700, 100));
  EXPECT_GT(s.PredictBytes(c, 4700, 100), s.PredictBytes(fixed32, 4700, 100));
  EXPECT_EQ(s.PredictBytes(c, 97, 3), s.PredictBytes(fixed32, 97, 3));
  for (const auto& [tokens, window] : std::vector<std::pair<int64_t, double>>{{4800, 100.0}, {100, 32.0}}) {
    c.max_tokens = tokens;
    auto opened = s.Open(c);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ((*opened)->Report().stats.at("recent_window"), window);
  }
}

TEST(SqCache, SyntheticModelSelfCalibrates) {
  at::manual_seed(4);
  const KvGeometry g = Geometry(64, 6, 2);
  SpectralQuantStrategy s(g, {});
  EXPECT_EQ(s.ProfileNames(), std::vector<std::string>{"default"});
  RunAndCheck(s, g, {}, false);
}

TEST(SqCache, QjlBytesAreRnormPlusSignWords) {
  at::manual_seed(5);
  const KvGeometry g = Geometry(64, 6, 2);
  auto profile = RandomProfile(64, 2);
  SpectralQuantStrategy s(g, {profile});
  StrategyConfig off, on;
  off.strategy = on.strategy = "spectral_quant";
  on.knobs = {{"use_qjl", true}, {"num_recent_tokens", int64_t{0}}};
  off.knobs = {{"num_recent_tokens", int64_t{0}}};
  int64_t extra = 0;
  std::shared_ptr<const SqPlan> plan = SqBuildPlan(SpectralQuantConfig(), *profile);
  for (const SqLayerPlan& lp : plan->layers) {
    int max_d = 0;
    for (const SqTypePlan& t : lp.k) max_d = std::max(max_d, t.d_eff);
    extra += g.n_kv_heads * (2 + 4 * SqSignWords(max_d));  // §9 test 7: fp16 r_norm + u32 sign words
  }
  // 10 tokens, the first a sink (num_sink_tokens 1): 9 records.
  EXPECT_EQ(s.PredictBytes(on, 10, 0) - s.PredictBytes(off, 10, 0), 9 * extra);
  // QJL changes the seed formula by d_eff bits per token and head.
  SqTypePlan kp, vp;
  SqBits b;
  SpectralQuantConfig q;
  q.use_qjl = true;
  SqBuildHeadPlan(q, profile->at(0, 0, 0), profile->at(0, 0, 1), 64, &kp, &vp, &b);
  SqTypePlan kp0, vp0;
  SqBuildHeadPlan(SpectralQuantConfig(), profile->at(0, 0, 0), profile->at(0, 0, 1), 64, &kp0, &vp0, &b);
  EXPECT_DOUBLE_EQ(kp.seed_bits - kp0.seed_bits, kp.d_eff);
  RunAndCheck(s, g, {{"use_qjl", true}}, true, /*check_values=*/false);
}

TEST(SqCache, RefusesHeadDimTheKernelsLack) {
  const KvGeometry g = Geometry(96, 4, 2);
  SpectralQuantStrategy s(g, {});
  StrategyConfig c;
  c.strategy = "spectral_quant";
  const absl::Status st = s.Validate(c);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("head dim 96"), std::string::npos) << st;
}

}  // namespace
}  // namespace kvstream
