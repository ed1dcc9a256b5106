// SAM-Gate on the GPU (kernels/sam_gate launchers, bf16 rings, the batched
// prepared decode that CUDA graphs replay). Skips without a CUDA device.
//  - The prepared group decode on the device equals each sequence decoded
//    alone through Forward (synthetic geometry, mixed regimes, padded rows).
//  - On the real model: the CUDA bf16 cache agrees with the CPU fp32 one
//    (teacher-forced top-1 on the CPU's greedy tokens, f per layer, regimes).
//  - Graph replay equals eager decode (KVSTREAM_CUDA_GRAPHS=0) and replays.
//  - Mixed with dense in one batch gives the tokens each gives alone.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

#define REQUIRE_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"
#define REQUIRE_CUDA_AND_MODEL()                                                           \
  REQUIRE_CUDA();                                                                          \
  if (!std::filesystem::exists(testing::DefaultModelPath())) GTEST_SKIP() << "no model"

StrategyConfig Sam(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "sam_gate";
  c.knobs = std::move(knobs);
  return c;
}

TEST(SamGateCuda, PreparedGroupDecodeEqualsEachSequenceAlone) {
  REQUIRE_CUDA();
  at::manual_seed(11);
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = 8;
  g.n_kv_heads = 2;
  g.head_dim = 128;
  g.context_length = 8192;
  g.dtype = at::kBFloat16;
  g.device = c10::Device(c10::kCUDA, 0);
  const int64_t H = g.n_heads, Hk = g.n_kv_heads, D = g.head_dim, L = g.n_layers;
  auto opt = at::TensorOptions().dtype(at::kBFloat16).device(g.device);
  const std::vector<StrategyConfig> cfgs = {
      Sam({{"f_flat_max", 1e30}, {"f_obs_min", 1e30}, {"max_ctx_flat", int64_t{16}}}),
      Sam({{"f_flat_max", 0.0}, {"f_obs_min", 1e30}, {"max_ctx_trans", int64_t{24}}, {"num_sink_tokens", int64_t{2}}}),
      // A long ring: the split-K plan (> 1 split) and its workspace.
      Sam({{"f_flat_max", 0.0}, {"f_obs_min", 0.0}, {"max_ctx_obs", int64_t{4096}}}),
  };
  const std::vector<int64_t> prompt = {40, 70, 3000};
  const int64_t B = 3, padded = 4;
  SamGateStrategy alone_s(g), group_s(g);
  std::vector<std::unique_ptr<SequenceCache>> alone, group;
  for (const auto& c : cfgs) {
    auto a = alone_s.Open(c);
    auto b = group_s.Open(c);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    alone.push_back(std::move(*a));
    group.push_back(std::move(*b));
  }
  for (int64_t i = 0; i < B; ++i) {
    const int64_t n = prompt[i];
    for (int64_t l = 0; l < L; ++l) {
      at::Tensor q = at::randn({H, n, D}, opt), k = at::randn({Hk, n, D}, opt), v = at::randn({Hk, n, D}, opt);
      ASSERT_TRUE(alone[i]->Forward(l, q, k, v, SeqStep{0, n, true, true}, StepContext{}).ok());
      ASSERT_TRUE(group[i]->Forward(l, q, k, v, SeqStep{0, n, true, true}, StepContext{}).ok());
    }
  }
  std::vector<SequenceCache*> seqs;
  for (auto& c : group) seqs.push_back(c.get());
  for (int step = 0; step < 20; ++step) {
    std::vector<SeqStep> steps;
    for (int64_t i = 0; i < B; ++i) steps.push_back(SeqStep{prompt[i] + step, 1, false, false});
    StepContext ctx;
    ctx.step = step;
    auto key = group_s.PrepareDecode(seqs, steps, padded, ctx);
    ASSERT_TRUE(key.ok()) << key.status();
    ctx.decode_prepared = true;
    for (int64_t l = 0; l < L; ++l) {
      at::Tensor qkv = at::randn({padded, H + 2 * Hk, D}, opt);
      GroupTensors t;
      t.q = qkv.narrow(1, 0, H);
      t.k = qkv.narrow(1, H, Hk);
      t.v = qkv.narrow(1, H + Hk, Hk);
      t.out = at::full({padded, H, D}, NAN, opt);
      for (int64_t i = 0; i < B; ++i) t.row_offset.push_back(i);
      ASSERT_TRUE(group_s.ForwardGroup(l, seqs, steps, t, ctx).ok());
      for (int64_t i = 0; i < B; ++i) {
        auto a = alone[i]->Forward(l, t.q[i].unsqueeze(1).contiguous(), t.k[i].unsqueeze(1).contiguous(),
                                   t.v[i].unsqueeze(1).contiguous(), steps[i], StepContext{});
        ASSERT_TRUE(a.ok()) << a.status();
        // Same kernels; the split plan may differ (batch of 4 vs 1): bf16 output rounding.
        at::Tensor want = a->squeeze(1).to(at::kFloat), got = t.out[i].to(at::kFloat);
        const double rel = ((got - want).abs().max() / want.abs().max().clamp_min(1e-6)).item<double>();
        ASSERT_LE(rel, 2e-2) << "step " << step << " layer " << l << " seq " << i;
      }
      EXPECT_EQ(t.out.narrow(0, B, padded - B).abs().max().item<float>(), 0.0f) << "padded rows";
    }
  }
}

std::unique_ptr<Engine> MakeEngine(const std::string& device) {
  EngineOptions o;
  o.model_path = testing::DefaultModelPath();
  o.device = device;
  o.kv_pool_bytes = device == "cuda" ? (1ll << 30) : 0;
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

std::vector<int32_t> LongPrompt(const Tokenizer& tok) {
  std::string text;
  for (int i = 0; i < 12; ++i) {
    text += "Chapter " + std::to_string(i + 1) +
            ". The river kept its own calendar: it rose in spring, slowed in summer, and in the autumn the "
            "villagers counted the boats that came down from the mountains. ";
  }
  return tok.Encode(text + "At the end of the year the elders wrote down", true);
}

GenerateSpec SamSpec(GenerateSpec s, std::map<std::string, KnobValue> knobs) {
  s.kv.strategy = "sam_gate";
  s.kv.knobs = std::move(knobs);
  return s;
}

TEST(SamGateCuda, RealModelBf16AgreesWithCpuFp32) {
  REQUIRE_CUDA_AND_MODEL();
  auto cuda = MakeEngine("cuda");
  auto cpu = MakeEngine("cpu");
  ASSERT_NE(cuda, nullptr);
  ASSERT_NE(cpu, nullptr);
  const GenerateSpec base = testing::GreedySpec(LongPrompt(cpu->tokenizer()), 64);
  for (const auto& [label, knobs] : std::vector<std::pair<std::string, std::map<std::string, KnobValue>>>{
           {"obstructed 16-bit W=64 S=4", {{"f_flat_max", 0.0}, {"f_obs_min", 0.0}, {"max_ctx_obs", int64_t{64}},
                                           {"num_sink_tokens", int64_t{4}}}},
           {"transition int8 W=128", {{"f_flat_max", 0.0}, {"f_obs_min", 1e30}}},
           {"calibrate (probe on both)", {{"calibrate", true}}}}) {
    GenerateSpec s = SamSpec(base, knobs);
    auto c = cpu->GenerateBatch({s});
    ASSERT_TRUE(c.ok()) << c.status();
    GenerateSpec g = s;
    g.teacher_forced = (*c)[0].token_ids;
    g.top_logprobs = 1;
    std::vector<int32_t> top1;
    auto d = cuda->GenerateBatch({g}, [&](size_t, const StreamDelta& delta) {
      for (const TokenOut& t : delta.tokens) top1.push_back(t.top.empty() ? -1 : t.top[0].token_id);
    });
    ASSERT_TRUE(d.ok()) << d.status();
    const auto& want = (*c)[0].token_ids;
    ASSERT_EQ(top1.size(), want.size());
    int match = 0;
    double mean_dlp = 0.0;
    for (size_t i = 0; i < want.size(); ++i) {
      match += top1[i] == want[i];
      mean_dlp += std::abs((*d)[0].logprobs[i] - (*c)[0].logprobs[i]) / want.size();
    }
    const double rate = double(match) / double(want.size());
    std::printf("[sam-gate-cuda] %s: top-1 agreement with CPU fp32 %.4f, mean |dlogprob| %.4f\n", label.c_str(),
                rate, mean_dlp);
    EXPECT_GE(rate, 0.95) << label;
    EXPECT_LT(mean_dlp, 0.1) << label;
    // Same regimes; the probe's f within 10% (bf16 q/k vs fp32).
    const CacheReport& rc = (*c)[0].cache;
    const CacheReport& rg = (*d)[0].cache;
    ASSERT_EQ(rc.layers.size(), rg.layers.size());
    for (size_t l = 0; l < rc.layers.size(); ++l) {
      // (calibrate: the proposed regime of a layer at a threshold may flip)
      if (!s.kv.knobs.count("calibrate")) {
        EXPECT_EQ(rc.layers[l].detail, rg.layers[l].detail) << label << " layer " << l;
      }
      EXPECT_EQ(rc.layers[l].bytes, rg.layers[l].bytes) << label << " layer " << l;
      const double fc = rc.layers[l].stats.at("f"), fg = rg.layers[l].stats.at("f");
      if (!std::isnan(fc)) {
        EXPECT_NEAR(fg, fc, 0.1 * std::abs(fc) + 1e-3) << label << " layer " << l;
      }
    }
  }
}

TEST(SamGateCuda, GraphReplayEqualsEagerDecode) {
  REQUIRE_CUDA_AND_MODEL();
  auto graphs = MakeEngine("cuda");
  auto eager = testing::WithEnv("KVSTREAM_CUDA_GRAPHS", "0", [] { return MakeEngine("cuda"); });
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  const Tokenizer& tok = graphs->tokenizer();
  std::vector<GenerateSpec> specs = {
      SamSpec(testing::GreedySpec(LongPrompt(tok), 96),
              {{"f_flat_max", 0.0}, {"f_obs_min", 0.0}, {"max_ctx_obs", int64_t{32}}, {"num_sink_tokens", int64_t{4}}}),
      SamSpec(testing::GreedySpec(tok.Encode("def fib(n):", true), 96), {}),  // probed regimes
      SamSpec(testing::GreedySpec(LongPrompt(tok), 96), {{"f_flat_max", 1e30}, {"f_obs_min", 1e30}}),  // FLAT int4
  };
  auto a = graphs->GenerateBatch(specs), b = eager->GenerateBatch(specs);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  testing::ExpectGraphRunEqualsEager(*a, *b);
  for (size_t r = 0; r < specs.size(); ++r) {
    EXPECT_EQ((*a)[r].cache.kv_bytes_device, (*b)[r].cache.kv_bytes_device);
  }
  EXPECT_GT(graphs->model().decode_graph_replays(), 60);
  EXPECT_EQ(eager->model().decode_graph_replays(), 0);
}

TEST(SamGateCuda, MixedWithDenseInOneBatchFollowsEachRequestAlone) {
  REQUIRE_CUDA_AND_MODEL();
  auto engine = MakeEngine("cuda");
  ASSERT_NE(engine, nullptr);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<GenerateSpec> specs = {
      testing::GreedySpec(tok.Encode("The capital of France is", true), 40),
      SamSpec(testing::GreedySpec(LongPrompt(tok), 40),
              {{"f_flat_max", 0.0}, {"f_obs_min", 0.0}, {"max_ctx_obs", int64_t{32}}, {"obs_bits", int64_t{8}}}),
      SamSpec(testing::GreedySpec(tok.Encode("def fib(n):", true), 40), {}),
  };
  auto together = engine->GenerateBatch(specs);
  ASSERT_TRUE(together.ok()) << together.status();
  for (size_t i = 0; i < specs.size(); ++i) {
    testing::ExpectAloneAgreesOrNearTie(*engine, specs[i], (*together)[i].token_ids, "request " + std::to_string(i));
  }
  const CacheReport& r = (*together)[1].cache;
  EXPECT_EQ(r.strategy, "sam_gate");
  EXPECT_EQ(r.tokens_held, 32);
}

}  // namespace
}  // namespace kvstream
