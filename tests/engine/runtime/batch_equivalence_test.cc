// A batch of prompts of different lengths decoded together (one forward per
// step over every sequence: prefill chunks and decode tokens mixed) gives the
// same greedy tokens as each decoded alone.
#include <gtest/gtest.h>

#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

TEST(BatchDecode, FourPromptsTogetherEqualEachAlone) {
  KV_REQUIRE_MODEL(engine);
  const Tokenizer& tok = engine->tokenizer();
  const std::vector<std::string> prompts = {
      "Hi",
      "The quick brown fox jumps over the lazy dog. Then the dog",
      "def add(a, b):\n    return",
      "A long time ago, in a kingdom far away, there lived a king who had three daughters. "
      "The eldest was proud, the second was clever, and the youngest",
  };
  std::vector<GenerateSpec> specs;
  for (const auto& p : prompts) specs.push_back(testing::GreedySpec(tok.Encode(p, true), 24));
  auto together = engine->GenerateBatch(specs);
  ASSERT_TRUE(together.ok()) << together.status();
  for (size_t i = 0; i < specs.size(); ++i) {
    auto alone = engine->GenerateBatch({specs[i]});
    ASSERT_TRUE(alone.ok()) << alone.status();
    EXPECT_EQ((*together)[i].token_ids, (*alone)[0].token_ids) << "prompt " << i;
    ASSERT_EQ((*together)[i].logprobs.size(), (*alone)[0].logprobs.size());
    for (size_t t = 0; t < (*alone)[0].logprobs.size(); ++t) {
      EXPECT_NEAR((*together)[i].logprobs[t], (*alone)[0].logprobs[t], 1e-3) << "prompt " << i << " token " << t;
    }
  }
}

TEST(BatchDecode, StaggeredLengthsFinishIndependently) {
  KV_REQUIRE_MODEL(engine);
  const Tokenizer& tok = engine->tokenizer();
  std::vector<GenerateSpec> specs = {testing::GreedySpec(tok.Encode("One two", true), 3),
                                     testing::GreedySpec(tok.Encode("Three four five", true), 17)};
  auto r = engine->GenerateBatch(specs);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].completion_tokens, 3);
  EXPECT_EQ((*r)[1].completion_tokens, 17);
  EXPECT_EQ((*r)[0].finish, FinishReason::kLength);
}

TEST(EngineValidation, RejectsBadRequestsNamingTheField) {
  KV_REQUIRE_MODEL(engine);
  GenerateSpec s = testing::GreedySpec({1, 2, 3}, 4);
  s.prompt_ids.push_back(999999);
  absl::Status st = engine->Validate(s);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("prompt_token_ids[3]"), std::string::npos) << st;

  s = testing::GreedySpec({}, 4);
  EXPECT_EQ(engine->Validate(s).code(), absl::StatusCode::kInvalidArgument);

  s = testing::GreedySpec({1, 2}, 9000);
  st = engine->Validate(s);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("max_new_tokens"), std::string::npos) << st;

  s = testing::GreedySpec(std::vector<int32_t>(8000, 5), 500);
  st = engine->Validate(s);
  EXPECT_NE(st.message().find("8500"), std::string::npos) << st;

  s = testing::GreedySpec({1, 2}, 4);
  s.sampling.top_p = 0.0f;
  EXPECT_NE(engine->Validate(s).message().find("sampling.top_p"), std::string::npos);

  s = testing::GreedySpec({1, 2}, 4);
  s.kv.strategy = "no_such_strategy";
  EXPECT_EQ(engine->Validate(s).code(), absl::StatusCode::kInvalidArgument);
}

TEST(DenseCacheReport, CountsAllocatedBlocksAndFreesAtFinish) {
  KV_REQUIRE_MODEL(engine);
  GenerateSpec s = testing::GreedySpec(engine->tokenizer().Encode("Hello there, how are you?", true), 8);
  auto r = engine->GenerateBatch({s});
  ASSERT_TRUE(r.ok()) << r.status();
  const CacheReport& c = (*r)[0].cache;
  const ModelConfig& m = engine->config();
  EXPECT_EQ(c.strategy, "dense");
  EXPECT_EQ(c.tokens_seen, (*r)[0].prompt_tokens + 8 - 1);  // the last token is never fed back
  // K and V for prompt + max_new tokens rounded up to 16-token blocks, fp32 on CPU.
  const int64_t slots = ((*r)[0].prompt_tokens + 8 + 15) / 16 * 16;
  EXPECT_EQ(c.kv_bytes_device, m.n_layers * 2 * m.n_kv_heads * slots * m.head_dim * 4);
  EXPECT_EQ(c.dense_equivalent_bytes, c.tokens_seen * m.n_layers * 2 * m.n_kv_heads * m.head_dim * 2);
  EXPECT_EQ(static_cast<int64_t>(c.layers.size()), m.n_layers);
}

}  // namespace
}  // namespace kvstream
