// `kvstream eval` and LASER-KV (laser_kv.md §6.1): the retrieval prompts end
// with their question, and a laser_kv run without an explicit query_len gets
// the question's token count as its query, so LASER-KV scores the context
// with the question alone (as upstream does) rather than with the last 64
// prompt tokens, most of them filler. Fake tokenizer, no server.
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/eval_plan.h"
#include "client/eval_prompts.h"
#include "gtest/gtest.h"
#include "tests/client/fake_tokenizer.h"

namespace kvstream::client {
namespace {

using testing::FakeTokenizer;
using testing::Filler;

std::string Tail(FakeTokenizer& tok, const std::vector<int32_t>& ids, int32_t n) {
  std::string out;
  for (size_t i = ids.size() - static_cast<size_t>(n); i < ids.size(); ++i) out += tok.PieceOf(ids[i]);
  return out;
}

TEST(LaserKvEval, QuestionTokensAreThePromptsTrailingQuestion) {
  FakeTokenizer tok;
  const Tokens filler = Filler(tok, 200);
  auto passkey = BuildPasskey(tok, ChatMlFormat(), filler, 1000, 50, "54321");
  ASSERT_TRUE(passkey.ok()) << passkey.status();
  EXPECT_EQ(Tail(tok, passkey->prompt, passkey->question_tokens),
            "\n\nWhat is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is");
  std::mt19937_64 rng(3);
  auto needle = BuildNeedle(tok, ChatMlFormat(), filler, 1000, rng);
  ASSERT_TRUE(needle.ok()) << needle.status();
  const std::string q = Tail(tok, needle->prompt, needle->question_tokens);
  EXPECT_EQ(q.rfind("\n\nWhat is the special magic number for ", 0), 0u) << q;
  EXPECT_EQ(q.substr(q.size() - 3), " is") << q;
  EXPECT_EQ(q.find("<|im_start|>user"), std::string::npos) << "only the question, not the intro: " << q;
}

TEST(LaserKvEval, LaserRunsProbeWithTheQuestionUnlessQueryLenIsSet) {
  EvalCase c{EvalTask::kPasskey, 2048, 50, 0, "12345", {}, 18};
  kvstream::v1::KvCompression laser;
  laser.mutable_laser_kv()->set_compression_ratio(0.25f);
  const kvstream::v1::KvCompression got = EvalKvFor(laser, c);
  ASSERT_TRUE(got.laser_kv().has_query_len());
  EXPECT_EQ(got.laser_kv().query_len(), 18);
  EXPECT_FLOAT_EQ(got.laser_kv().compression_ratio(), 0.25f) << "other knobs kept";

  kvstream::v1::KvCompression pinned = laser;
  pinned.mutable_laser_kv()->set_query_len(40);
  EXPECT_EQ(EvalKvFor(pinned, c).laser_kv().query_len(), 40) << "an explicit query_len wins";

  EvalCase ppl{EvalTask::kPpl, 2048, -1, 0, "", {}, 0};
  EXPECT_FALSE(EvalKvFor(laser, ppl).laser_kv().has_query_len()) << "no question: the server's default";

  kvstream::v1::KvCompression dense;
  dense.mutable_dense();
  EXPECT_FALSE(EvalKvFor(dense, c).has_laser_kv()) << "other strategies untouched";
}

}  // namespace
}  // namespace kvstream::client
