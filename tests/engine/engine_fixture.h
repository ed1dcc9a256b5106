// One engine on the bundled real model, loaded once per test binary (CPU fp32).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/runtime/engine.h"
#include "tests/test_paths.h"

namespace kvstream::testing {

inline Engine* SharedEngine() {
  static std::unique_ptr<Engine> engine = [] {
    std::unique_ptr<Engine> e;
    if (!std::filesystem::exists(DefaultModelPath())) return e;
    EngineOptions o;
    o.model_path = DefaultModelPath();
    o.device = "cpu";
    auto r = Engine::Load(o);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) e = std::move(*r);
    return e;
  }();
  return engine.get();
}

// A fresh engine on the bundled model (nullptr, with a test failure, if it
// does not load), e.g. with tensor parallelism.
// kv_pool_bytes: 0 = the engine's default (on a GPU most of the free memory,
// so a second engine on the same GPU needs a bound).
inline std::unique_ptr<Engine> LoadBundledEngine(const std::string& device, int tensor_parallel = 1,
                                                 int64_t kv_pool_bytes = 0) {
  EngineOptions o;
  o.model_path = DefaultModelPath();
  o.device = device;
  o.tensor_parallel = tensor_parallel;
  o.kv_pool_bytes = kv_pool_bytes;
  auto e = Engine::Load(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? std::move(*e) : nullptr;
}

// f() with the environment variable `name` set to `value`, unset again after
// (the A/B switches and KVSTREAM_CUDA_GRAPHS are read while f runs).
template <class F>
auto WithEnv(const char* name, const char* value, F f) {
  ::setenv(name, value, 1);
  auto r = f();
  ::unsetenv(name);
  return r;
}

// A batch generated from CUDA graphs against the same batch run eagerly:
// the same tokens and logprobs within `tol`, request by request.
inline void ExpectGraphRunEqualsEager(const std::vector<GenerateOutcome>& graphs,
                                      const std::vector<GenerateOutcome>& eager, double tol = 1e-4) {
  ASSERT_EQ(graphs.size(), eager.size());
  for (size_t r = 0; r < graphs.size(); ++r) {
    EXPECT_EQ(graphs[r].token_ids, eager[r].token_ids) << "request " << r;
    ASSERT_EQ(graphs[r].logprobs.size(), eager[r].logprobs.size()) << "request " << r;
    for (size_t i = 0; i < graphs[r].logprobs.size(); ++i) {
      EXPECT_NEAR(graphs[r].logprobs[i], eager[r].logprobs[i], tol) << "request " << r << " token " << i;
    }
  }
}

#define KV_REQUIRE_MODEL(engine_var)                                                       \
  ::kvstream::Engine* engine_var = ::kvstream::testing::SharedEngine();                   \
  if (engine_var == nullptr) GTEST_SKIP() << "bundled model absent: run scripts/setup.sh"

inline GenerateSpec GreedySpec(std::vector<int32_t> prompt, int32_t n) {
  GenerateSpec s;
  s.prompt_ids = std::move(prompt);
  s.sampling.temperature = 0.0f;
  s.sampling.max_new_tokens = n;
  s.sampling.ignore_eos = true;
  s.return_logprobs = true;
  return s;
}

// A request run in a mixed batch against the same request alone. In bf16 on
// the GPU the two runs go through different kernels (one decode row takes the
// skinny GEMV, several take cuBLAS) that round differently, so greedy tokens
// may part where the top two logits are nearly tied, and then follow
// different texts. Teacher-force the alone run with the batch's tokens: its
// top-1 must be the batch's token everywhere except at near ties (the batch's
// choice at most max_margin nats below), and those must be rare.
inline void ExpectAloneAgreesOrNearTie(Engine& engine, GenerateSpec spec, const std::vector<int32_t>& together,
                                       const std::string& label, double max_margin = 0.5) {
  spec.teacher_forced = together;
  spec.top_logprobs = 5;
  std::vector<TokenOut> out;
  auto r = engine.GenerateBatch({spec}, [&](size_t, const StreamDelta& d) {
    out.insert(out.end(), d.tokens.begin(), d.tokens.end());
  });
  ASSERT_TRUE(r.ok()) << label << ": " << r.status();
  ASSERT_EQ(out.size(), together.size()) << label;
  size_t parted = 0;
  double worst = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_FALSE(out[i].top.empty()) << label;
    if (out[i].top[0].token_id == together[i]) continue;
    ++parted;
    double margin = INFINITY;
    for (const auto& t : out[i].top) {
      if (t.token_id == together[i]) margin = out[i].top[0].logprob - t.logprob;
    }
    worst = std::max(worst, margin);
    EXPECT_LT(margin, max_margin) << label << ": token " << i << " alone prefers " << out[i].top[0].token_id
                                  << ", the batch chose " << together[i];
  }
  EXPECT_LE(parted * 10, out.size()) << label << ": " << parted << " near ties of " << out.size();
  std::printf("[mixed-batch] %s: %zu/%zu top-1 equal alone, near ties %zu (widest %.3f nats)\n", label.c_str(),
              out.size() - parted, out.size(), parted, worst);
}

}  // namespace kvstream::testing
