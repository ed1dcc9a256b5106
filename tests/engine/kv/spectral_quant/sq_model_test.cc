// SpectralQuant on the bundled SmolLM2-135M (spectral_quant.md §9 test 8 and
// the byte checks of test 9), with the strategy constructed directly and a
// profile calibrated in the test on the shipped corpus (§6.2).
//
// A tap cache runs dense and SpectralQuant side by side on the same q/k/v of
// every layer and returns dense's output to the model, so every layer sees
// dense inputs and the cosines measure each layer's own error:
//  - K and V reconstruction cosine (per token and head, mean) >= 0.97,
//  - attention output cosine vs dense (prefill and decode) >= 0.95,
//  with the per-layer minimum printed; noise_bits=1 and noise_bits=2 +
//  value_noise_bits=1 are reported, not gated; kv_bytes_device equals the
//  allocated buffers and PredictBytes; compress_decode_tokens=false keeps
//  every generated token dense.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <memory>

#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_strategy.h"
#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

std::shared_ptr<const SqProfile> SharedProfile(Engine* e) {
  static std::shared_ptr<const SqProfile> p = [&]() -> std::shared_ptr<const SqProfile> {
    // The model's own default profile where scripts/build.sh cached it
    // (calibrating takes minutes on one thread); else calibrate here.
    KvGeometry g = e->model().geometry();
    g.model_path = testing::DefaultModelPath();
    if (auto loaded = SqLoadProfiles(g, /*calibrate=*/false); loaded.ok()) {
      for (const auto& prof : *loaded) {
        if (prof->name == "default") return prof;
      }
    }
    auto texts = SqReadCorpus(testing::SourceDir() + "/data/calibration/corpus.txt");
    EXPECT_TRUE(texts.ok()) << texts.status();
    if (!texts.ok()) return nullptr;
    auto prof = SqCalibrateModel(e->model(), e->tokenizer(), *texts, "default", 0);
    EXPECT_TRUE(prof.ok()) << prof.status();
    return prof.ok() ? std::make_shared<const SqProfile>(std::move(*prof)) : nullptr;
  }();
  return p;
}

double MeanCos(const at::Tensor& a, const at::Tensor& b) {  // over the last dim
  return at::cosine_similarity(a.to(at::kDouble), b.to(at::kDouble), -1, 1e-12).mean().item<double>();
}

struct LayerStats {
  double out_cos_sum = 0.0;
  int64_t out_n = 0;
  at::Tensor k, v;  // [Hkv, T, D] every token appended
};

class TapCache final : public SequenceCache {
 public:
  TapCache(const KvGeometry& g, std::unique_ptr<SequenceCache> sq, int64_t max_tokens)
      : dense_(g, max_tokens), sq_(std::move(sq)), stats_(g.n_layers) {}
  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext& ctx) override {
    auto d = dense_.Forward(layer, q, k, v, seq, ctx);
    if (!d.ok()) return d;
    auto s = sq_->Forward(layer, q, k, v, seq, ctx);
    if (!s.ok()) return s;
    LayerStats& st = stats_[layer];
    const int64_t n = q.size(1), H = q.size(0);
    st.out_cos_sum += MeanCos(*s, *d) * static_cast<double>(n * H);
    st.out_n += n * H;
    st.k = st.k.defined() ? at::cat({st.k, k.to(at::kFloat)}, 1) : k.to(at::kFloat).clone();
    st.v = st.v.defined() ? at::cat({st.v, v.to(at::kFloat)}, 1) : v.to(at::kFloat).clone();
    return d;
  }
  int64_t BytesHeld() const override { return sq_->BytesHeld(); }
  CacheReport Report() const override { return sq_->Report(); }
  SpectralQuantSequenceCache& sq() { return static_cast<SpectralQuantSequenceCache&>(*sq_); }
  const std::vector<LayerStats>& stats() const { return stats_; }

 private:
  DenseSequenceCache dense_;
  std::unique_ptr<SequenceCache> sq_;
  std::vector<LayerStats> stats_;
};

class TapStrategy final : public Strategy {
 public:
  const char* name() const override { return "sq_tap"; }
  absl::Status Validate(const StrategyConfig&) const override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig&) override {
    return absl::UnimplementedError("tap");
  }
  int64_t PredictBytes(const StrategyConfig&, int64_t, int64_t) const override { return 0; }
};

std::vector<int32_t> Prompt(const Tokenizer& tok) {
  std::string text;
  for (int i = 0; i < 5; ++i) {
    text += "Report " + std::to_string(i + 1) +
            ": the harbour committee met on a windy Thursday to discuss the new pier, the cost of dredging the "
            "channel and the complaints of the ferry company about the schedule. ";
  }
  text += "The committee finally decided that";
  return tok.Encode(text, true);
}

struct RunResult {
  std::unique_ptr<TapCache> tap;
  int64_t prompt = 0, generated = 0, predicted = 0;
};

// Prefill `prompt` in one step, then `gen` greedy decode steps.
RunResult RunSq(Engine* e, SpectralQuantStrategy& strategy, std::map<std::string, KnobValue> knobs, int64_t gen) {
  RunResult r;
  const std::vector<int32_t> prompt = Prompt(e->tokenizer());
  StrategyConfig c;
  c.strategy = "spectral_quant";
  c.knobs = std::move(knobs);
  c.max_tokens = static_cast<int64_t>(prompt.size()) + gen;
  auto opened = strategy.Open(c);
  EXPECT_TRUE(opened.ok()) << opened.status();
  if (!opened.ok()) return r;
  r.predicted = strategy.PredictBytes(c, static_cast<int64_t>(prompt.size()), gen);
  const KvGeometry g = e->model().geometry();
  r.tap = std::make_unique<TapCache>(g, std::move(*opened), c.max_tokens);
  TapStrategy tap_strategy;
  SeqInput in;
  in.strategy = &tap_strategy;
  in.cache = r.tap.get();
  in.tokens = prompt;
  in.is_prompt = true;
  in.last_prompt_chunk = true;
  StepContext ctx;
  auto logits = e->model().Forward({&in, 1}, ctx);
  EXPECT_TRUE(logits.ok()) << logits.status();
  r.prompt = static_cast<int64_t>(prompt.size());
  for (int64_t i = 0; i < gen && logits.ok(); ++i) {
    SeqInput d;
    d.strategy = &tap_strategy;
    d.cache = r.tap.get();
    d.tokens = {static_cast<int32_t>(logits->argmax(-1).item<int64_t>())};
    d.start_pos = r.prompt + i;
    ctx.step++;
    logits = e->model().Forward({&d, 1}, ctx);
    EXPECT_TRUE(logits.ok()) << logits.status();
    r.generated++;
  }
  return r;
}

struct Cosines {
  double k_mean = 0, v_mean = 0, o_mean = 0, k_min = 1, v_min = 1, o_min = 1;
};

Cosines Measure(RunResult& r, const std::string& label) {
  Cosines c;
  const auto& stats = r.tap->stats();
  const int64_t L = static_cast<int64_t>(stats.size());
  for (int64_t l = 0; l < L; ++l) {
    // Records hold positions sinks .. sinks + n (the sinks are exact).
    const int64_t n = r.tap->sq().compressed(l), s = r.tap->sq().sinks(l);
    auto kh = r.tap->sq().Reconstruct(l, 0);
    auto vh = r.tap->sq().Reconstruct(l, 1);
    EXPECT_TRUE(kh.ok() && vh.ok());
    const double kc = MeanCos(*kh, stats[l].k.narrow(1, s, n));
    const double vc = MeanCos(*vh, stats[l].v.narrow(1, s, n));
    const double oc = stats[l].out_cos_sum / static_cast<double>(stats[l].out_n);
    c.k_mean += kc / L, c.v_mean += vc / L, c.o_mean += oc / L;
    c.k_min = std::min(c.k_min, kc), c.v_min = std::min(c.v_min, vc), c.o_min = std::min(c.o_min, oc);
  }
  std::printf("[%s] K cos mean %.4f (layer min %.4f)  V cos mean %.4f (min %.4f)  attn out cos mean %.4f (min %.4f)\n",
              label.c_str(), c.k_mean, c.k_min, c.v_mean, c.v_min, c.o_mean, c.o_min);
  const CacheReport rep = r.tap->Report();
  std::printf("[%s] kv_bytes %lld, dense-equivalent %lld, ratio %.2f, seed_ratio %.2f, K d_eff mean %.1f, V d_eff "
              "mean %.1f, k_bits %.1f, v_bits %.1f\n",
              label.c_str(), static_cast<long long>(rep.kv_bytes_device),
              static_cast<long long>(rep.dense_equivalent_bytes), rep.compression_ratio, rep.stats.at("seed_ratio"),
              rep.stats.at("k_d_eff_mean"), rep.stats.at("v_d_eff_mean"), rep.stats.at("k_bits_per_token"),
              rep.stats.at("v_bits_per_token"));
  return c;
}

TEST(SqModel, DefaultsReconstructAndAttendLikeDense) {
  KV_REQUIRE_MODEL(engine);
  auto profile = SharedProfile(engine);
  ASSERT_NE(profile, nullptr);
  SpectralQuantStrategy strategy(engine->model().geometry(), {profile});
  RunResult r = RunSq(engine, strategy, {}, 8);
  ASSERT_TRUE(r.tap);
  const Cosines c = Measure(r, "defaults");
  EXPECT_GE(c.k_mean, 0.97);
  EXPECT_GE(c.v_mean, 0.97);
  EXPECT_GE(c.o_mean, 0.95);
  RecordProperty("k_cos_mean", std::to_string(c.k_mean));
  RecordProperty("v_cos_mean", std::to_string(c.v_mean));
  RecordProperty("attn_cos_mean", std::to_string(c.o_mean));
  RecordProperty("attn_cos_layer_min", std::to_string(c.o_min));
  // Honest bytes (§9 test 9): reported = allocated = predicted (max_tokens known).
  const CacheReport rep = r.tap->Report();
  EXPECT_EQ(rep.kv_bytes_device, r.tap->sq().BytesHeld());
  EXPECT_EQ(rep.kv_bytes_device, r.predicted);
  int64_t layer_sum = 0;
  for (const LayerCacheReport& l : rep.layers) layer_sum += l.bytes;
  EXPECT_EQ(layer_sum, rep.kv_bytes_device);
  EXPECT_EQ(rep.tokens_seen, r.prompt + r.generated);
  EXPECT_EQ(rep.stats.at("tokens_sink"), 1.0);  // num_sink_tokens default
  // The last num_recent_tokens (default 32) are held exact in the window.
  EXPECT_EQ(rep.stats.at("tokens_compressed"), static_cast<double>(r.prompt + r.generated - 1 - 32));
  EXPECT_EQ(rep.stats.at("tokens_dense"), 32.0);
  // Seed formula at defaults when every K d_eff < D/2: K = 3D + 32 bits.
  if (rep.stats.at("k_d_eff_max") < 32) {
    EXPECT_DOUBLE_EQ(rep.stats.at("k_bits_per_token"), 3 * 64 + 32);
  }
  EXPECT_EQ(rep.strategy, "spectral_quant");
}

TEST(SqModel, NoiseModesAreReported) {
  KV_REQUIRE_MODEL(engine);
  auto profile = SharedProfile(engine);
  ASSERT_NE(profile, nullptr);
  SpectralQuantStrategy strategy(engine->model().geometry(), {profile});
  RunResult a = RunSq(engine, strategy, {{"noise_bits", int64_t{1}}}, 4);
  RunResult b = RunSq(engine, strategy, {{"noise_bits", int64_t{2}}, {"value_noise_bits", int64_t{1}}}, 4);
  ASSERT_TRUE(a.tap && b.tap);
  const Cosines ca = Measure(a, "noise_bits=1");
  const Cosines cb = Measure(b, "noise_bits=2,value_noise_bits=1");
  RecordProperty("noise1_attn_cos", std::to_string(ca.o_mean));
  RecordProperty("noise2v1_attn_cos", std::to_string(cb.o_mean));
  EXPECT_LT(b.tap->Report().kv_bytes_device, RunSq(engine, strategy, {}, 4).tap->Report().kv_bytes_device);
}

TEST(SqModel, DenseTailKeepsGeneratedTokensDense) {
  KV_REQUIRE_MODEL(engine);
  auto profile = SharedProfile(engine);
  ASSERT_NE(profile, nullptr);
  SpectralQuantStrategy strategy(engine->model().geometry(), {profile});
  RunResult r = RunSq(engine, strategy, {{"compress_decode_tokens", false}}, 6);
  ASSERT_TRUE(r.tap);
  for (int64_t l = 0; l < engine->model().geometry().n_layers; ++l) {
    EXPECT_EQ(r.tap->sq().compressed(l), r.prompt - 1);  // the first token is a sink
    EXPECT_EQ(r.tap->sq().dense_tail(l), r.generated);
  }
  const CacheReport rep = r.tap->Report();
  EXPECT_EQ(rep.stats.at("tokens_dense"), 6.0);
  EXPECT_EQ(rep.kv_bytes_device, r.predicted);
  const Cosines c = Measure(r, "compress_decode_tokens=false");
  EXPECT_GE(c.o_mean, 0.95);
}

TEST(SqModel, PlanCacheHitOnTheSecondRequest) {
  KV_REQUIRE_MODEL(engine);
  auto profile = SharedProfile(engine);
  ASSERT_NE(profile, nullptr);
  SpectralQuantStrategy strategy(engine->model().geometry(), {profile});
  StrategyConfig c;
  c.strategy = "spectral_quant";
  auto a = strategy.Open(c);
  auto b = strategy.Open(c);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->Report().stats.at("plan_cache_hit"), 0.0);
  EXPECT_EQ((*b)->Report().stats.at("plan_cache_hit"), 1.0);
  c.knobs = {{"calibration_profile", std::string("other")}};
  EXPECT_EQ(strategy.Validate(c).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstream
