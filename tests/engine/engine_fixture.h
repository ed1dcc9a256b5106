// One engine on the bundled real model, loaded once per test binary (CPU fp32).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

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

}  // namespace kvstream::testing
