// Passkey / needle prompt building and answer scoring (client/eval_prompts.h)
// against a fake tokenizer. No server.
#include "client/eval_prompts.h"

#include <algorithm>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_tokenizer.h"

namespace kvstream::client {
namespace {

using testing::FakeTokenizer;
using testing::Filler;

std::string Decode(FakeTokenizer& tok, const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += tok.PieceOf(id);
  return out;
}

// Index of the first token of `needle` (a token sequence) in `ids`.
size_t Find(const std::vector<int32_t>& ids, const std::vector<int32_t>& needle) {
  return static_cast<size_t>(std::search(ids.begin(), ids.end(), needle.begin(), needle.end()) - ids.begin());
}

TEST(Passkey, PromptIsExactlyTheContextLong) {
  FakeTokenizer tok;
  const Tokens filler = Filler(tok, 200);
  for (int32_t context : {200, 511, 1024}) {
    for (int depth : {0, 37, 100}) {
      auto c = BuildPasskey(tok, ChatMlFormat(), filler, context, depth, "12345");
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_EQ(c->prompt.size(), static_cast<size_t>(context)) << "context " << context << " depth " << depth;
      EXPECT_EQ(c->answer, "12345");
    }
  }
}

TEST(Passkey, KeySitsAtTheRequestedDepthAfterASentenceEnd) {
  FakeTokenizer tok;
  const Tokens filler = Filler(tok, 200);
  const std::vector<int32_t> key_sentence = tok.Tokenize("\nThe pass key is 54321.")->ids;
  for (int depth : {0, 25, 50, 75, 100}) {
    auto c = BuildPasskey(tok, ChatMlFormat(), filler, 1000, depth, "54321");
    ASSERT_TRUE(c.ok()) << c.status();
    const size_t at = Find(c->prompt, key_sentence);
    ASSERT_LT(at, c->prompt.size());
    const double fraction = static_cast<double>(at) / 1000.0;
    EXPECT_NEAR(fraction, depth / 100.0, 0.06) << "depth " << depth;
    ASSERT_EQ(c->depths.size(), 1u);
    EXPECT_NEAR(c->depths[0], depth, 2);
    // The token before the key sentence ends a sentence (or the intro).
    const std::string before = tok.PieceOf(c->prompt[at - 1]);
    EXPECT_TRUE(before == "." || before == "\n") << "depth " << depth << ": '" << before << "'";
  }
}

TEST(Passkey, ChatMlWrapsTheQuestionAndStartsTheAnswer) {
  FakeTokenizer tok;
  auto c = BuildPasskey(tok, ChatMlFormat(), Filler(tok, 50), 300, 50, "11111");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string text = Decode(tok, c->prompt);
  EXPECT_EQ(text.rfind("<|im_start|>user\n", 0), 0u) << text.substr(0, 40);
  EXPECT_TRUE(text.ends_with("What is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is")) << text;
}

TEST(Passkey, ContextTooShortForTheQuestionIsRejected) {
  FakeTokenizer tok;
  auto c = BuildPasskey(tok, PlainFormat(), Filler(tok, 10), 20, 50, "12345");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Needle, HidesFourDistinctPairsAndAsksForOneOfThem) {
  FakeTokenizer tok;
  const Tokens filler = Filler(tok, 200);
  std::mt19937_64 rng(3);
  for (int trial = 0; trial < 5; ++trial) {
    auto c = BuildNeedle(tok, ChatMlFormat(), filler, 900, rng);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->prompt.size(), 900u);
    const std::string text = Decode(tok, c->prompt);
    size_t count = 0;
    for (size_t p = text.find("The special magic number for "); p != std::string::npos;
         p = text.find("The special magic number for ", p + 1)) {
      ++count;
    }
    // kNeedlePairs hidden, one in the question, one in the answer prefix.
    EXPECT_EQ(count, static_cast<size_t>(kNeedlePairs) + 1);
    EXPECT_NE(text.find(absl::StrCat(" is ", c->answer, ".")), std::string::npos) << c->answer;
    ASSERT_EQ(c->depths.size(), static_cast<size_t>(kNeedlePairs));
    EXPECT_TRUE(std::is_sorted(c->depths.begin(), c->depths.end()));
  }
}

TEST(PromptFormat, AutoPicksChatMlOnlyWhenItsMarkersAreSingleTokens) {
  FakeTokenizer chatml(true), plain(false);
  EXPECT_EQ(ResolvePromptFormat("auto", chatml)->name, "chatml");
  EXPECT_EQ(ResolvePromptFormat("auto", plain)->name, "plain");
  EXPECT_EQ(ResolvePromptFormat("plain", chatml)->name, "plain");
  EXPECT_EQ(ResolvePromptFormat("llama", chatml).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AnswerMatches, TakesTheFirstRunOfDigitsIgnoringSpaces) {
  EXPECT_TRUE(AnswerMatches(" 27611.", "27611"));
  EXPECT_TRUE(AnswerMatches(" 2 7 6 1 1. Remember", "27611"));
  EXPECT_TRUE(AnswerMatches("is 27611, and 99999", "27611"));
  EXPECT_FALSE(AnswerMatches(" 276110", "27611"));
  EXPECT_FALSE(AnswerMatches(" 2761", "27611"));
  EXPECT_FALSE(AnswerMatches(" 99999 then 27611", "27611"));
  EXPECT_FALSE(AnswerMatches(" a very important piece", "27611"));
}

TEST(Perplexity, SplitTeacherForcesTheLastTokens) {
  Tokens window;
  for (int i = 0; i < 10; ++i) window.ids.push_back(i);
  window.pieces.resize(10);
  PerplexityCase c = SplitForPerplexity(window, 3);
  EXPECT_THAT(c.prompt, ::testing::ElementsAre(0, 1, 2, 3, 4, 5, 6));
  EXPECT_THAT(c.forced, ::testing::ElementsAre(7, 8, 9));
  // The prompt keeps at least one token.
  EXPECT_EQ(SplitForPerplexity(window, 50).prompt.size(), 1u);
}

TEST(Agreement, PrefixStopsAtTheFirstDifference) {
  EXPECT_EQ(AgreeingPrefix({1, 2, 3, 4}, {1, 2, 3, 4}), 4);
  EXPECT_EQ(AgreeingPrefix({1, 2, 3, 4}, {1, 2, 9, 4}), 2);
  EXPECT_EQ(AgreeingPrefix({1, 2, 3, 4}, {7, 2, 3, 4}), 0);
  EXPECT_EQ(AgreeingPrefix({1, 2, 3, 4}, {1, 2}), 2);
}

TEST(SnapToSentenceEnd, MovesBackToJustAfterAFullStop) {
  FakeTokenizer tok;
  const Tokens filler = Filler(tok, 10);  // "." at indices 7, 15, ...
  EXPECT_EQ(SnapToSentenceEnd(filler, 12), 8u);
  EXPECT_EQ(SnapToSentenceEnd(filler, 8), 8u);
  EXPECT_EQ(SnapToSentenceEnd(filler, 0), 0u);
  EXPECT_EQ(SnapToSentenceEnd(filler, filler.size()), filler.size());
}

}  // namespace
}  // namespace kvstream::client
