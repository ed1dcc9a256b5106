// The engine with dense served through the paged pool and the decode kernel's
// twin (the CUDA server's path, here on CPU) generates what the contiguous
// dense engine generates: same greedy tokens, logprobs within 1e-3, for a
// batch of prompts of different lengths decoded together.
#include <gtest/gtest.h>

#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

TEST(PagedEngine, BatchEqualsContiguousDenseEngine) {
  KV_REQUIRE_MODEL(reference);
  EngineOptions o;
  o.model_path = testing::DefaultModelPath();
  o.device = "cpu";
  o.paged_dense = true;
  o.kv_pool_bytes = 64ll << 20;
  auto paged = Engine::Load(o);
  ASSERT_TRUE(paged.ok()) << paged.status();
  const Tokenizer& tok = reference->tokenizer();
  std::vector<GenerateSpec> specs;
  for (const char* p : {"Hi", "The quick brown fox jumps over the lazy dog. Then the dog",
                        "def add(a, b):\n    return", "Numbers: 1, 2, 3, 5, 8, 13,"}) {
    specs.push_back(testing::GreedySpec(tok.Encode(p, true), 24));
  }
  auto want = reference->GenerateBatch(specs);
  auto got = (*paged)->GenerateBatch(specs);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ((*got)[i].token_ids, (*want)[i].token_ids) << "prompt " << i;
    ASSERT_EQ((*got)[i].logprobs.size(), (*want)[i].logprobs.size());
    for (size_t t = 0; t < (*want)[i].logprobs.size(); ++t) {
      EXPECT_NEAR((*got)[i].logprobs[t], (*want)[i].logprobs[t], 1e-3) << "prompt " << i << " token " << t;
    }
    EXPECT_EQ((*got)[i].cache.strategy, "dense");
    EXPECT_GT((*got)[i].cache.kv_bytes_device, 0);
  }
}

}  // namespace
}  // namespace kvstream
