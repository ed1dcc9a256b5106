// The synthetic-weights mode builds a real architecture's shapes with seeded
// random weights and runs the same forward (checked at the small shape).
#include <gtest/gtest.h>

#include "engine/model/synthetic.h"
#include "engine/runtime/engine.h"

namespace kvstream {
namespace {

TEST(SyntheticModel, KnownShapesMatchPublishedConfigs) {
  auto c = SyntheticConfig("llama3-8b");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->n_layers, 32);
  EXPECT_EQ(c->hidden, 4096);
  EXPECT_EQ(c->n_kv_heads, 8);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  auto q = SyntheticConfig("qwen2.5-7b");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->qkv_bias);
  EXPECT_EQ(q->head_dim, 128);
  auto bad = SyntheticConfig("gpt-5");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("llama3-8b"), std::string::npos);
}

TEST(SyntheticModel, SmallShapeGeneratesDeterministicallyPerSeed) {
  EngineOptions o;
  o.synthetic = "smollm2-135m";
  o.device = "cpu";
  o.synthetic_seed = 7;
  auto a = Engine::Load(o);
  ASSERT_TRUE(a.ok()) << a.status();
  GenerateSpec s;
  s.prompt_ids = (*a)->tokenizer().Encode("hello world", true);
  EXPECT_EQ(s.prompt_ids.size(), 11u) << "byte-level: one id per byte";
  s.sampling.temperature = 0;
  s.sampling.max_new_tokens = 6;
  s.sampling.ignore_eos = true;
  auto ra = (*a)->GenerateBatch({s});
  ASSERT_TRUE(ra.ok()) << ra.status();
  auto b = Engine::Load(o);
  ASSERT_TRUE(b.ok());
  auto rb = (*b)->GenerateBatch({s});
  ASSERT_TRUE(rb.ok());
  EXPECT_EQ((*ra)[0].token_ids, (*rb)[0].token_ids);
  EXPECT_EQ((*ra)[0].token_ids.size(), 6u);
}

}  // namespace
}  // namespace kvstream
