// Tokenizer::Create() validation and the BPE / added-token rules, on tiny
// hand-made vocabularies where the expected ids can be worked out by hand.
#include <chrono>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace kvstream {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::AddControl;
using testing::TinyByteLevelData;

// Byte tokens are ids 0..255 (id == byte), extras from 256.
constexpr int32_t kA = 'a', kB = 'b', kC = 'c';
constexpr int32_t kAB = 256, kBC = 257, kABC = 258, kAA = 259, kAAAA = 260;

TokenizerData Abc(std::vector<std::string> merges) {
  TokenizerData d = TinyByteLevelData({"ab", "bc", "abc", "aa", "aaaa"});
  d.merges = std::move(merges);
  return d;
}

std::unique_ptr<Tokenizer> MustCreate(TokenizerData d) {
  auto tok = Tokenizer::Create(std::move(d));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

void ExpectError(TokenizerData d, absl::StatusCode code, const std::string& needle) {
  auto tok = Tokenizer::Create(std::move(d));
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), code) << tok.status();
  EXPECT_THAT(std::string(tok.status().message()), HasSubstr(needle));
}

TEST(TokenizerCreate, RejectsUnsupportedTokenizerModel) {
  TokenizerData d = TinyByteLevelData();
  d.model = "llama";  // SentencePiece
  ExpectError(d, absl::StatusCode::kFailedPrecondition, "'llama'");
}

TEST(TokenizerCreate, RejectsEmptyVocabulary) {
  ExpectError(TokenizerData{}, absl::StatusCode::kInvalidArgument, "no tokens");
}

TEST(TokenizerCreate, RejectsOutOfRangeSpecialIds) {
  const int32_t n = static_cast<int32_t>(TinyByteLevelData().tokens.size());
  struct Case {
    void (*set)(TokenizerData&, int32_t);
    int32_t value;
    std::string field;
  };
  const Case cases[] = {
      {[](TokenizerData& d, int32_t v) { d.bos_id = v; }, n, "bos_id"},
      {[](TokenizerData& d, int32_t v) { d.eos_id = v; }, -2, "eos_id"},
      {[](TokenizerData& d, int32_t v) { d.pad_id = v; }, n + 5, "pad_id"},
      {[](TokenizerData& d, int32_t v) { d.unk_id = v; }, -7, "unk_id"},
      {[](TokenizerData& d, int32_t v) { d.extra_eos_ids = {3, v}; }, n, "extra_eos_ids[1]"},
      {[](TokenizerData& d, int32_t v) { d.extra_eos_ids = {v}; }, -1, "extra_eos_ids[0]"},
  };
  for (const Case& c : cases) {
    TokenizerData d = TinyByteLevelData();
    c.set(d, c.value);
    ExpectError(d, absl::StatusCode::kInvalidArgument, c.field);
  }
}

TEST(TokenizerCreate, RejectsTokenTypesOfWrongLengthOrValue) {
  TokenizerData d = TinyByteLevelData();
  d.token_types.pop_back();
  ExpectError(d, absl::StatusCode::kInvalidArgument, "token_types has 255 entries");
  d = TinyByteLevelData();
  d.token_types[7] = static_cast<TokenType>(42);
  ExpectError(d, absl::StatusCode::kInvalidArgument, "token_types[7] = 42");
}

TEST(TokenizerCreate, RejectsMalformedMerges) {
  for (const std::string bad : {"ab", "a b c", " a", "a ", "a  b", ""}) {
    ExpectError(Abc({"a b", bad}), absl::StatusCode::kInvalidArgument, "merge 1 ");
  }
  ExpectError(Abc({"a zz"}), absl::StatusCode::kInvalidArgument, "missing from the vocabulary ('zz')");
  ExpectError(Abc({"c a"}), absl::StatusCode::kInvalidArgument, "('ca')");  // result not a token
}

TEST(TokenizerCreate, RejectsUnknownPreNameAndBadRegexes) {
  TokenizerData d = TinyByteLevelData();
  d.pre = "tekken";
  ExpectError(d, absl::StatusCode::kFailedPrecondition, "unknown pre-tokenizer 'tekken'");
  d.pre_regexes = {"(unclosed"};
  ExpectError(d, absl::StatusCode::kInvalidArgument, "does not compile");
  d.pre_regexes = {"a(?=b)"};
  ExpectError(d, absl::StatusCode::kFailedPrecondition, "lookaround");
}

TEST(TokenizerCreate, RejectsAddBosWithoutBosId) {
  TokenizerData d = TinyByteLevelData();
  d.add_bos = true;
  ExpectError(d, absl::StatusCode::kInvalidArgument, "add_bos");
}

TEST(TokenizerBpe, MergesApplyLowestRankFirstNotLeftFirst) {
  EXPECT_THAT(MustCreate(Abc({"b c", "a b"}))->Encode("abc", false), ElementsAre(kA, kBC));
  EXPECT_THAT(MustCreate(Abc({"a b", "b c"}))->Encode("abc", false), ElementsAre(kAB, kC));
  EXPECT_THAT(MustCreate(Abc({"a b", "ab c"}))->Encode("abc", false), ElementsAre(kABC));
}

TEST(TokenizerBpe, EqualRankPairsMergeLeftmostFirst) {
  auto tok = MustCreate(Abc({"a a", "aa aa"}));
  EXPECT_THAT(tok->Encode("aaa", false), ElementsAre(kAA, kA));
  EXPECT_THAT(tok->Encode("aaaa", false), ElementsAre(kAAAA));
  EXPECT_THAT(tok->Encode("aaaaa", false), ElementsAre(kAAAA, kA));
}

TEST(TokenizerBpe, IgnoreMergesTakesAWholeWordFromTheVocabulary) {
  TokenizerData d = Abc({"b c"});
  EXPECT_THAT(MustCreate(d)->Encode("abc", false), ElementsAre(kA, kBC));
  d.ignore_merges = true;
  EXPECT_THAT(MustCreate(d)->Encode("abc", false), ElementsAre(kABC));
  d.ignore_merges = false;
  d.pre = "llama-bpe";  // implies it, as in Llama-3's tokenizer.json
  EXPECT_THAT(MustCreate(d)->Encode("abc", false), ElementsAre(kABC));
}

TEST(TokenizerBpe, LongWordWithoutSpacesEncodesInNearLinearTime) {
  auto tok = MustCreate(Abc({"a a", "aa aa"}));
  const std::string text(1 << 20, 'a');
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->Encode(text, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids.size(), text.size() / 4);
  EXPECT_LT(s, 5.0);  // the quadratic textbook loop would take minutes
}

TEST(TokenizerBpe, BosAndEosAreAddedOnlyWhenAskedAndConfigured) {
  TokenizerData d = TinyByteLevelData();
  d.bos_id = AddControl(d, "<s>");
  d.eos_id = AddControl(d, "</s>");
  d.add_bos = d.add_eos = true;
  auto tok = MustCreate(d);
  EXPECT_THAT(tok->Encode("a", true), ElementsAre(d.bos_id, kA, d.eos_id));
  EXPECT_THAT(tok->Encode("a", false), ElementsAre(kA));
  EXPECT_THAT(tok->Encode("", true), ElementsAre(d.bos_id, d.eos_id));
}

TEST(TokenizerBpe, LongestAddedTokenWinsAtTheSamePosition) {
  TokenizerData d = TinyByteLevelData();
  const int32_t shorter = AddControl(d, "<a>");
  const int32_t longer = AddControl(d, "<a>b");
  auto tok = MustCreate(d);
  EXPECT_THAT(tok->Encode("<a>b<a>", false), ElementsAre(longer, shorter));
  EXPECT_THAT(tok->Encode("x<a>", false), ElementsAre('x', shorter));
}

TEST(TokenizerBpe, UserDefinedTokensAreMatchedButNotSkippedAsSpecial) {
  TokenizerData d = TinyByteLevelData();
  d.tokens.push_back("<tool>");
  d.token_types.push_back(TokenType::kUserDefined);
  const int32_t tool = static_cast<int32_t>(d.tokens.size() - 1);
  const int32_t ctl = AddControl(d, "<|c|>");
  auto tok = MustCreate(d);
  const auto ids = tok->Encode("<tool><|c|>", false);
  EXPECT_THAT(ids, ElementsAre(tool, ctl));
  EXPECT_FALSE(tok->IsSpecial(tool));
  EXPECT_EQ(tok->Decode(ids, /*skip_special=*/true), "<tool>");
}

TEST(TokenizerBpe, ByteMissingFromVocabularyBecomesFusedUnk) {
  TokenizerData d = TinyByteLevelData();
  d.unk_id = AddControl(d, "<unk>");
  d.tokens['z'] = "";  // no token for byte 'z' any more
  d.token_types['z'] = TokenType::kUnused;
  auto tok = MustCreate(d);
  EXPECT_THAT(tok->Encode("azzb", false), ElementsAre(kA, d.unk_id, kB));
}

}  // namespace
}  // namespace kvstream
