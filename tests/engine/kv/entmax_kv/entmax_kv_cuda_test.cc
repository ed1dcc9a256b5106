// EntmaxKV on the GPU (kernels/entmax_kv launchers): the same prefill chunks
// and decode steps through a CUDA strategy and a CPU one (twins) give the same
// outputs, fp32 (top-k with a small budget: same pages, same softmax) and
// bf16 (budget covering the context: dense). Skips without a CUDA device.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include "engine/kv/entmax_kv/entmax_kv_strategy.h"
#include "tests/engine/kv/entmax_kv/entmax_group_harness.h"

namespace kvstream {
namespace {

#define REQUIRE_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"

KvGeometry Geo(c10::Device device, c10::ScalarType dtype) {
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = 8;
  g.n_kv_heads = 2;
  g.head_dim = 128;
  g.context_length = 4096;
  g.dtype = dtype;
  g.device = device;
  g.kv_pool_bytes = int64_t{256} << 20;
  return g;
}

// Max over steps and layers of the relative error CUDA vs CPU.
double CompareCudaToCpu(c10::ScalarType dtype, std::map<std::string, KnobValue> knobs, int64_t prompt,
                        int64_t chunk, int64_t decode) {
  at::manual_seed(7);
  KvGeometry gc = Geo(c10::Device(c10::kCPU), at::kFloat), gg = Geo(c10::Device(c10::kCUDA, 0), dtype);
  EntmaxKvStrategy cpu(gc, gc.kv_pool_bytes), gpu(gg, gg.kv_pool_bytes);
  StrategyConfig c;
  c.strategy = "entmax_kv";
  c.knobs = std::move(knobs);
  c.max_tokens = prompt + decode;
  auto oc = cpu.Open(c);
  auto og = gpu.Open(c);
  EXPECT_TRUE(oc.ok() && og.ok()) << oc.status() << og.status();
  if (!oc.ok() || !og.ok()) return 1e9;
  double worst = 0;
  int64_t pos = 0, step = 0;
  auto do_step = [&](int64_t n) {
    SeqStep s;
    s.start_pos = pos;
    s.n_new = n;
    s.is_prompt = n > 1;
    StepContext ctx;
    ctx.step = step++;
    for (int64_t l = 0; l < gc.n_layers; ++l) {
      at::Tensor q = at::randn({8, n, 128}), k = at::randn({2, n, 128}), v = at::randn({2, n, 128});
      // The CPU side sees the GPU's rounding of the inputs.
      q = q.to(dtype).to(at::kFloat);
      k = k.to(dtype).to(at::kFloat);
      v = v.to(dtype).to(at::kFloat);
      auto a = (*oc)->Forward(l, q, k, v, s, ctx);
      auto b = (*og)->Forward(l, q.to(gg.device, dtype), k.to(gg.device, dtype), v.to(gg.device, dtype), s, ctx);
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
      at::Tensor bb = b->to(at::kCPU, at::kFloat);
      if (n == 1) worst = std::max(worst, ((bb - *a).norm() / a->norm()).item<double>());
    }
    ASSERT_TRUE((*oc)->EndStep(s, ctx).ok());
    ASSERT_TRUE((*og)->EndStep(s, ctx).ok());
    pos += n;
  };
  while (pos < prompt) do_step(std::min(chunk, prompt - pos));
  for (int64_t i = 0; i < decode; ++i) do_step(1);
  const CacheReport rc = (*oc)->Report(), rg = (*og)->Report();
  EXPECT_DOUBLE_EQ(rc.stats.at("read_fraction"), rg.stats.at("read_fraction"));
  EXPECT_LE(rg.stats.at("mass_error_max"), 1e-3);
  return worst;
}

TEST(EntmaxKvCuda, TopkSmallBudgetFp32MatchesTheTwins) {
  REQUIRE_CUDA();
  EXPECT_LE(CompareCudaToCpu(at::kFloat, {{"token_budget", int64_t{64}}, {"dense_layers", int64_t{1}}}, 700, 256,
                             100),
            1e-4);
}

TEST(EntmaxKvCuda, PerQueryHeadListsFp32MatchTheTwins) {
  REQUIRE_CUDA();
  EXPECT_LE(CompareCudaToCpu(at::kFloat,
                             {{"token_budget", int64_t{128}}, {"dense_layers", int64_t{0}},
                              {"gqa_selection", std::string("PER_QUERY_HEAD")}},
                             1000, 512, 50),
            1e-4);
}

TEST(EntmaxKvCuda, Bf16BudgetCoveringTheContextFollowsDense) {
  REQUIRE_CUDA();
  EXPECT_LE(CompareCudaToCpu(at::kBFloat16, {{"dense_layers", int64_t{0}}}, 600, 300, 60), 2e-2);
}

// Pages of 8, 32 and 64 tokens over the pool's 16-token blocks (per
// sequence, then a padded prepared step) against the twins.
TEST(EntmaxKvCuda, EveryPageSizeFp32MatchesTheTwins) {
  REQUIRE_CUDA();
  const KvGeometry gg = Geo(c10::Device(c10::kCUDA, 0), at::kFloat), gc = Geo(c10::Device(c10::kCPU), at::kFloat);
  for (int64_t P : {8, 32, 64}) {
    EXPECT_LE(CompareCudaToCpu(at::kFloat,
                               {{"token_budget", 4 * P}, {"dense_layers", int64_t{0}}, {"page_size", P}}, 700,
                               256, 60),
              1e-4)
        << "P " << P;
    const auto r = entmax_test::RunGroupVsSingle(gg, gc, {40, 700, 1010}, {4 * P, 4 * P, 4 * P}, 24,
                                                 /*prepared=*/true, 4, 23 + P, P);
    EXPECT_LE(r.worst, 1e-4) << "P " << P;
    entmax_test::ExpectSameCounts(r);
  }
}

// A step's decode rows in one launch per kernel on the GPU (eager, and the
// prepared step the decode graphs capture, padded, its table widening from
// 64 to 128 pages) against the twins' per-sequence path.
TEST(EntmaxKvCuda, BatchedDecodeFp32MatchesTheTwins) {
  REQUIRE_CUDA();
  const KvGeometry gg = Geo(c10::Device(c10::kCUDA, 0), at::kFloat), gc = Geo(c10::Device(c10::kCPU), at::kFloat);
  const auto r = entmax_test::RunGroupVsSingle(gg, gc, {40, 300, 700, 1010}, {64, 128, 64, 64}, 24,
                                               /*prepared=*/false, 0, 21);
  EXPECT_LE(r.worst, 1e-4);
  entmax_test::ExpectSameCounts(r);
}

TEST(EntmaxKvCuda, PreparedDecodeFp32MatchesTheTwins) {
  REQUIRE_CUDA();
  const KvGeometry gg = Geo(c10::Device(c10::kCUDA, 0), at::kFloat), gc = Geo(c10::Device(c10::kCPU), at::kFloat);
  const auto r = entmax_test::RunGroupVsSingle(gg, gc, {40, 700, 1010}, {64, 64, 64}, 24, /*prepared=*/true, 4, 22);
  EXPECT_LE(r.worst, 1e-4);
  entmax_test::ExpectSameCounts(r);
}

}  // namespace
}  // namespace kvstream
