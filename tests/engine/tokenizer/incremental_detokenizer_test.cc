// IncrementalDetokenizer: streamed text equals the one-shot decode, and no
// chunk is ever broken UTF-8.
#include <random>

#include "gtest/gtest.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace kvstream {
namespace {

using tok_internal::IsValidUtf8;

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Streams `ids`, checking every chunk; returns the concatenation.
std::string Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special = false) {
  IncrementalDetokenizer detok(tok, skip_special);
  std::string all;
  for (int32_t id : ids) {
    const std::string chunk = detok.Push(id);
    EXPECT_TRUE(IsValidUtf8(chunk)) << "chunk after id " << id;
    all += chunk;
  }
  const std::string tail = detok.Flush();
  EXPECT_TRUE(IsValidUtf8(tail));
  return all + tail;
}

// id of the token whose raw bytes are exactly `b`.
int32_t ByteToken(const Tokenizer& tok, uint8_t b) {
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.TokenBytes(id) == std::string(1, static_cast<char>(b))) return id;
  }
  return -1;
}

TEST(IncrementalDetokenizer, StreamingCorpusTokenByTokenEqualsFullDecode) {
  KV_GET_SMOL_TOKENIZER(tok);
  for (const auto& e : testing::LoadCorpus()) {
    EXPECT_EQ(Stream(*tok, e.ids), tok->Decode(e.ids)) << "text: " << e.text;
    EXPECT_EQ(Stream(*tok, e.ids, true), tok->Decode(e.ids, true)) << "text: " << e.text;
  }
}

TEST(IncrementalDetokenizer, SplitFourByteEmojiIsHeldBackUntilItsLastByte) {
  KV_GET_SMOL_TOKENIZER(tok);
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
  std::vector<int32_t> ids;
  for (char c : emoji) ids.push_back(ByteToken(*tok, static_cast<uint8_t>(c)));
  for (int32_t id : ids) ASSERT_GE(id, 0);
  IncrementalDetokenizer detok(*tok);
  EXPECT_EQ(detok.Push(ids[0]), "");
  EXPECT_EQ(detok.Push(ids[1]), "");
  EXPECT_EQ(detok.Push(ids[2]), "");
  EXPECT_EQ(detok.Push(ids[3]), emoji);
  EXPECT_EQ(detok.Flush(), "");
}

TEST(IncrementalDetokenizer, BytesThatCanNeverCompleteAreReplacedAtOnce) {
  KV_GET_SMOL_TOKENIZER(tok);
  const int32_t f0 = ByteToken(*tok, 0xF0);
  const int32_t cont = ByteToken(*tok, 0x80);
  const int32_t a = ByteToken(*tok, 'A');
  IncrementalDetokenizer detok(*tok);
  EXPECT_EQ(detok.Push(cont), kReplacement);  // stray continuation byte
  EXPECT_EQ(detok.Push(f0), "");              // could still become an emoji
  EXPECT_EQ(detok.Push(a), std::string(kReplacement) + "A");
  EXPECT_EQ(detok.Flush(), "");
}

TEST(IncrementalDetokenizer, FlushReplacesAnUnfinishedSequenceLikeDecode) {
  KV_GET_SMOL_TOKENIZER(tok);
  const std::vector<int32_t> ids = {ByteToken(*tok, 'x'), ByteToken(*tok, 0xF0), ByteToken(*tok, 0x9F)};
  IncrementalDetokenizer detok(*tok);
  EXPECT_EQ(detok.Push(ids[0]), "x");
  EXPECT_EQ(detok.Push(ids[1]), "");
  EXPECT_EQ(detok.Push(ids[2]), "");
  EXPECT_EQ(detok.Flush(), kReplacement);
  EXPECT_EQ(tok->Decode(ids), std::string("x") + std::string(kReplacement));
}

TEST(IncrementalDetokenizer, RandomByteTokenStreamsEqualDecode) {
  KV_GET_SMOL_TOKENIZER(tok);
  // Lead bytes, continuation bytes and ASCII in random order: every mix of
  // complete, truncated and ill-formed sequences.
  std::vector<int32_t> pool;
  for (int b : {0x41, 0x20, 0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC3, 0xC2, 0xE0, 0xE2, 0xED, 0xEF, 0xF0, 0xF3, 0xF4}) {
    const int32_t id = ByteToken(*tok, static_cast<uint8_t>(b));
    if (id >= 0) pool.push_back(id);
  }
  ASSERT_GE(pool.size(), 12u);
  std::mt19937 rng(42);
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<int32_t> ids(1 + rng() % 12);
    for (int32_t& id : ids) id = pool[rng() % pool.size()];
    EXPECT_EQ(Stream(*tok, ids), tok->Decode(ids));
  }
}

TEST(IncrementalDetokenizer, SkipSpecialDropsControlTokens) {
  KV_GET_SMOL_TOKENIZER(tok);
  const auto ids = tok->Encode("<|im_start|>assistant\nHi<|im_end|>", false);
  EXPECT_EQ(Stream(*tok, ids, /*skip_special=*/true), "assistant\nHi");
  EXPECT_EQ(Stream(*tok, ids), "<|im_start|>assistant\nHi<|im_end|>");
}

TEST(IncrementalDetokenizer, OutOfRangeIdsEmitNothing) {
  KV_GET_SMOL_TOKENIZER(tok);
  IncrementalDetokenizer detok(*tok);
  EXPECT_EQ(detok.Push(-1), "");
  EXPECT_EQ(detok.Push(tok->vocab_size()), "");
  EXPECT_EQ(detok.Flush(), "");
}

}  // namespace
}  // namespace kvstream
