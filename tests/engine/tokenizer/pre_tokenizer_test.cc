// The RE2 pre-tokenizer against tokenizers' Oniguruma Split on the corpus
// (fixture pretokenize_corpus.jsonl), and the lookahead emulation by hand.
#include "engine/tokenizer/pre_tokenizer.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace kvstream::tok_internal {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

PreTokenizer ForPre(const std::string& pre) {
  auto regexes = RegexesForPreName(pre);
  EXPECT_TRUE(regexes.ok()) << regexes.status();
  auto pt = PreTokenizer::Create(*regexes);
  EXPECT_TRUE(pt.ok()) << pt.status();
  return *std::move(pt);
}

std::vector<std::string> Pieces(const PreTokenizer& pt, std::string_view text) {
  std::vector<std::string_view> views;
  pt.Split(text, &views);
  return std::vector<std::string>(views.begin(), views.end());
}

class PreTokenizerCorpus : public ::testing::TestWithParam<std::string> {};

TEST_P(PreTokenizerCorpus, PiecesEqualTokenizersSplitOnCorpus) {
  // Fixture names the regexes gpt2 / llama3 / qwen2; so do GGUF pre names.
  const PreTokenizer pt = ForPre(GetParam());
  const auto rows = testing::ReadJsonl(testing::TokenizerFixture("pretokenize_corpus.jsonl"));
  ASSERT_GE(rows.size(), 300u);
  int mismatches = 0;
  for (const auto& row : rows) {
    const std::string text = row["text"];
    const auto expected = row[GetParam()].get<std::vector<std::string>>();
    const auto got = Pieces(pt, text);
    EXPECT_EQ(got, expected) << "text: " << text;
    if ((mismatches += got != expected) > 10) FAIL() << "stopping after 10 mismatches";
  }
}

INSTANTIATE_TEST_SUITE_P(Regexes, PreTokenizerCorpus, ::testing::Values("gpt2", "llama3", "qwen2"));

TEST(PreTokenizer, WhitespaceRunLeavesItsLastSpaceToTheNextWord) {
  const PreTokenizer pt = ForPre("gpt2");
  EXPECT_THAT(Pieces(pt, "a   b"), ElementsAre("a", "  ", " b"));
  EXPECT_THAT(Pieces(pt, "a b"), ElementsAre("a", " b"));
  EXPECT_THAT(Pieces(pt, "a   "), ElementsAre("a", "   "));       // run at the end stays whole
  EXPECT_THAT(Pieces(pt, "a\tb"), ElementsAre("a", "\t", "b"));   // a run of one: plain \s+
  EXPECT_THAT(Pieces(pt, "a \t b"), ElementsAre("a", " \t", " b"));
  EXPECT_THAT(Pieces(pt, "a  \n!"), ElementsAre("a", "  ", "\n", "!"));
}

TEST(PreTokenizer, UnicodeWhitespaceIsWhitespaceLikeInOniguruma) {
  const PreTokenizer pt = ForPre("gpt2");
  // U+3000 is 3 bytes: the handed-back character must be whole.
  EXPECT_THAT(Pieces(pt, "x\u3000\u3000y"), ElementsAre("x", "\u3000", "\u3000", "y"));
  EXPECT_THAT(Pieces(pt, "x\u00a0 y"), ElementsAre("x", "\u00a0", " y"));
  EXPECT_THAT(Pieces(pt, "x\x0b\x0by"), ElementsAre("x", "\x0b", "\x0b", "y"));
}

TEST(PreTokenizer, Llama3GroupsDigitsByThreeAndQwen2SplitsThem) {
  EXPECT_THAT(Pieces(ForPre("llama-bpe"), "1234567"), ElementsAre("123", "456", "7"));
  EXPECT_THAT(Pieces(ForPre("qwen2"), "123"), ElementsAre("1", "2", "3"));
  EXPECT_THAT(Pieces(ForPre("smollm"), "12345 678"), ElementsAre("12345", " 678"));
}

TEST(PreTokenizer, PiecesCoverArbitraryBytesIncludingInvalidUtf8) {
  std::mt19937 rng(7);
  for (const std::string pre : {"gpt2", "llama3", "qwen2"}) {
    const PreTokenizer pt = ForPre(pre);
    for (int iter = 0; iter < 300; ++iter) {
      std::string text(rng() % 64, '\0');
      for (char& c : text) c = static_cast<char>(rng() % 4 == 0 ? ' ' : rng() % 256);
      std::string joined;
      for (const auto& p : Pieces(pt, text)) {
        EXPECT_FALSE(p.empty());
        joined += p;
      }
      EXPECT_EQ(joined, text);
    }
  }
}

TEST(PreTokenizer, SequenceStagesSplitEachOthersPieces) {
  auto pt = PreTokenizer::Create({R"(\p{N})", R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"});
  ASSERT_TRUE(pt.ok()) << pt.status();
  EXPECT_THAT(Pieces(*pt, "ab 12"), ElementsAre("ab", " ", "1", "2"));
}

TEST(PreTokenizer, UnknownPreNameIsNotFound) {
  EXPECT_EQ(RegexesForPreName("mystery").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(RegexesForPreName("mystery").status().message()), HasSubstr("smollm"));
}

TEST(PreTokenizer, TranslationRejectsLookaroundOtherThanTheFinalWhitespaceRule) {
  EXPECT_EQ(TranslateToRe2(R"(a(?=b))").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TranslateToRe2(R"((?<!x)y)").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TranslateToRe2(R"(\s+(?!\S)|a)").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TranslateToRe2(R"(a\s+(?!\S)|\s+)").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(TranslateToRe2(R"([^\S])").status().code(), absl::StatusCode::kFailedPrecondition);
  auto ok = TranslateToRe2(R"(a|\s+(?!\S)|\s+)");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->ws_lookahead);
}

TEST(PreTokenizer, TranslationMakesPerlClassesUnicodeAware) {
  auto t = TranslateToRe2(R"(\s|[^\s\d]|\w|\W|\[\s\])");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->pattern,
            R"([\t\n\x{0B}\f\r \x{85}\p{Z}]|[^\t\n\x{0B}\f\r \x{85}\p{Z}\p{Nd}]|[\p{L}\p{M}\p{Nd}\p{Pc}])"
            R"(|[^\p{L}\p{M}\p{Nd}\p{Pc}]|\[[\t\n\x{0B}\f\r \x{85}\p{Z}]\])");
}

TEST(PreTokenizer, BadRegexIsInvalidArgument) {
  EXPECT_EQ(PreTokenizer::Create({"(unclosed"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PreTokenizer::Create({"a{2,1}"}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PreTokenizer, EmptyMatchesDoNotLoopForever) {
  auto pt = PreTokenizer::Create({"x*"});
  ASSERT_TRUE(pt.ok());
  EXPECT_THAT(Pieces(*pt, "abxxc"), ElementsAre("ab", "xx", "c"));
}

}  // namespace
}  // namespace kvstream::tok_internal
