// LASER-KV strategy on CUDA (launchers) against the same run on CPU (twins),
// both fp32 so the selection sees the same scores up to summation order:
// the kept sets agree (allowing a few near-tie swaps), every layer's kept
// rows are the rows fed at those positions, and a bf16 CUDA run keeps the
// same counts. Decode (the dense kernel's fused append over C) equals exact
// attention, and with the real model decode steps replayed from CUDA graphs
// give the eager steps' tokens and logprobs. Skips without a device (or model).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>

#include "engine/kv/dense/dense_cache.h"
#include "tests/engine/engine_fixture.h"
#include "tests/engine/kv/laser_kv/laser_kv_driver.h"

namespace kvstream {
namespace {

LaserKvConfig Config(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "laser_kv";
  c.knobs = std::move(knobs);
  auto r = ParseLaserKvConfig(c, 1 << 17);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : LaserKvConfig{};
}

TEST(LaserKvCuda, LaunchersKeepTheTwinsSet) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  KvGeometry cpu = testing::LaserGeometry(3, 12, 4, 128);
  KvGeometry gpu = cpu;
  gpu.device = c10::Device(c10::kCUDA, 0);
  for (const char* mode : {"ACCUMULATE", "RECURSIVE"}) {
    for (const char* lsh : {"MAGICPIG_BASELINE", "FREQUENCY_RANK"}) {
      const auto cfg = Config({{"budget", int64_t{600}}, {"block_size", int64_t{512}}, {"query_len", int64_t{32}},
                               {"compression_mode", std::string(mode)}, {"lsh_mode", std::string(lsh)},
                               {"hybrid_ratio", 0.5}});
      LaserKvSequenceCache a(cpu, cfg, 2100), b(gpu, cfg, 2100);
      ASSERT_TRUE(testing::DriveLaser(a, cpu, 2080, 3).ok());
      ASSERT_TRUE(testing::DriveLaser(b, gpu, 2080, 3).ok());
      const auto& pa = a.held_positions();
      const auto& pb = b.held_positions();
      ASSERT_EQ(pa.size(), pb.size()) << mode << lsh;
      std::vector<int32_t> common;
      std::set_intersection(pa.begin(), pa.end(), pb.begin(), pb.end(), std::back_inserter(common));
      EXPECT_GE(common.size(), pa.size() * 98 / 100) << mode << lsh;
      std::vector<int64_t> p64(pb.begin(), pb.end());
      for (int64_t l = 0; l < gpu.n_layers; ++l) {
        EXPECT_TRUE(at::equal(b.layer_keys(l).cpu(), testing::SynthRows(l, p64, gpu.n_kv_heads, gpu.head_dim, 2.0)));
      }
      EXPECT_EQ(a.Report().stats.at("picks_lsh"), b.Report().stats.at("picks_lsh"));
    }
  }
  KvGeometry bf = gpu;
  bf.dtype = at::kBFloat16;
  LaserKvSequenceCache c(bf, Config({{"budget", int64_t{600}}, {"block_size", int64_t{512}}, {"query_len", int64_t{32}}}),
                         2100);
  ASSERT_TRUE(testing::DriveLaser(c, bf, 2080, 3).ok());
  // A = W = 150, G = 300: block 0 keeps its 212 middle tokens, blocks 1-3 pick 300 each, + the last tail.
  EXPECT_EQ(c.kept_after_prefill(), 150 + 212 + 3 * 300 + 150);
}

// Decode on the GPU reads the compacted cache through the dense decode
// kernel (one page per layer); it must equal exact attention over the held
// rows plus the new one, in fp32 and in bf16, at every step and layer.
TEST(LaserKvCuda, DecodeKernelEqualsAttentionOverTheHeldRows) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    KvGeometry g = testing::LaserGeometry(2, 8, 2, 128);
    g.device = c10::Device(c10::kCUDA, 0);
    g.dtype = dtype;
    const int64_t P = 3000;
    LaserKvSequenceCache c(g, Config({{"budget", int64_t{700}}, {"block_size", int64_t{1024}}}), P + 8);
    ASSERT_TRUE(testing::DriveLaser(c, g, P, 0).ok());
    at::manual_seed(5);
    const auto to = at::TensorOptions().device(g.device).dtype(dtype);
    for (int64_t i = 0; i < 6; ++i) {
      for (int64_t l = 0; l < g.n_layers; ++l) {
        at::Tensor q = at::randn({g.n_heads, 1, g.head_dim}, to), k = at::randn({g.n_kv_heads, 1, g.head_dim}, to);
        at::Tensor v = at::randn({g.n_kv_heads, 1, g.head_dim}, to);
        at::Tensor keys = at::cat({c.layer_keys(l), k}, 1).to(at::kFloat);
        at::Tensor values = at::cat({c.layer_values(l), v}, 1).to(at::kFloat);
        auto o = c.Forward(l, q, k, v, SeqStep{P + i, 1, false, false}, StepContext{i});
        ASSERT_TRUE(o.ok()) << o.status();
        at::Tensor want = CausalGqaAttention(q.to(at::kFloat), keys, values, keys.size(1) - 1);
        const double rel = ((o->to(at::kFloat) - want).abs().max() / want.abs().max()).item<double>();
        EXPECT_LE(rel, dtype == at::kFloat ? 1e-4 : 2e-2) << "step " << i << " layer " << l;
      }
      ASSERT_TRUE(c.EndStep(SeqStep{P + i, 1, false, false}, StepContext{i}).ok());
    }
  }
}

// A 1 GiB pool: two engines share the GPU in the graph-vs-eager tests.
std::unique_ptr<Engine> CudaEngine() { return testing::LoadBundledEngine("cuda", 1, int64_t{1} << 30); }

GenerateSpec LaserSpec(const Tokenizer& tok, const std::string& topic, int32_t n) {
  std::string text;
  for (int i = 0; i < 14; ++i) {
    text += "Part " + std::to_string(i + 1) + " of the " + topic +
            " log: the crew noted the weather, the cargo and the names of the ports they passed. ";
  }
  GenerateSpec s = testing::GreedySpec(tok.Encode(text + "The last port they reached was", true), n);
  s.kv.strategy = "laser_kv";
  s.kv.knobs = {{"budget", int64_t{160}}, {"block_size", int64_t{128}}, {"query_len", int64_t{16}}};
  s.return_logprobs = true;
  return s;
}

// Decode steps of a LASER-KV batch replay captured graphs (C grown for the
// request up front, the length in device memory, the kernel appending): the
// same tokens and logprobs as eager steps, which run the same launch.
TEST(LaserKvCuda, GraphReplayEqualsEagerDecode) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  if (!std::filesystem::exists(testing::DefaultModelPath())) GTEST_SKIP() << "no model";
  auto graphs = CudaEngine();
  auto eager = testing::WithEnv("KVSTREAM_CUDA_GRAPHS", "0", [] { return CudaEngine(); });
  ASSERT_NE(graphs, nullptr);
  ASSERT_NE(eager, nullptr);
  const Tokenizer& tok = graphs->tokenizer();
  const std::vector<GenerateSpec> specs = {LaserSpec(tok, "river", 80), LaserSpec(tok, "harbour", 64)};
  auto a = graphs->GenerateBatch(specs), b = eager->GenerateBatch(specs);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  testing::ExpectGraphRunEqualsEager(*a, *b);
  for (size_t r = 0; r < specs.size(); ++r) {
    const CacheReport& c = (*a)[r].cache;
    EXPECT_LT(c.tokens_held, c.tokens_seen) << "request " << r << ": the prompt was compressed";
  }
  EXPECT_GT(graphs->model().decode_graph_replays(), 60);
  EXPECT_EQ(eager->model().decode_graph_replays(), 0);
}

}  // namespace
}  // namespace kvstream
