// The SmolLM2 tokenizer built from the bundled GGUF against transformers on
// the same file (fixture: tests/oracle/tokenizer_make_fixture.py).
#include <algorithm>
#include <chrono>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace kvstream {
namespace {

using ::testing::ElementsAre;
using testing::LoadCorpus;

TEST(SmolLM2Tokenizer, CorpusFixtureCoversAtLeast300Strings) {
  const auto corpus = LoadCorpus();
  EXPECT_GE(corpus.size(), 300u);
  EXPECT_TRUE(std::any_of(corpus.begin(), corpus.end(), [](const auto& e) { return e.text.empty(); }));
}

TEST(SmolLM2Tokenizer, EncodeEqualsTransformersOnCorpus) {
  KV_GET_SMOL_TOKENIZER(tok);
  int mismatches = 0;
  for (const auto& e : LoadCorpus()) {
    const std::vector<int32_t> ids = tok->Encode(e.text, /*add_special_tokens=*/false);
    const std::vector<int32_t> ids_special = tok->Encode(e.text, /*add_special_tokens=*/true);
    EXPECT_EQ(ids, e.ids) << "text: " << e.text;
    EXPECT_EQ(ids_special, e.ids_special) << "text: " << e.text;
    mismatches += ids != e.ids;
    if (mismatches > 10) FAIL() << "stopping after 10 mismatches";
  }
}

TEST(SmolLM2Tokenizer, DecodeEqualsTransformersAndRoundTrips) {
  KV_GET_SMOL_TOKENIZER(tok);
  for (const auto& e : LoadCorpus()) {
    EXPECT_EQ(tok->Decode(e.ids), e.decoded) << "text: " << e.text;
    // Round trip, except where bytes without a byte token became <unk> (id 0).
    if (std::find(e.ids.begin(), e.ids.end(), 0) == e.ids.end()) EXPECT_EQ(tok->Decode(e.ids), e.text);
    EXPECT_EQ(tok->Decode(e.ids, /*skip_special=*/true), e.decoded_skip_special) << "text: " << e.text;
  }
}

TEST(SmolLM2Tokenizer, DecodeEqualsTransformersOnRandomIdsAndBrokenUtf8) {
  KV_GET_SMOL_TOKENIZER(tok);
  const auto rows = testing::ReadJsonl(testing::TokenizerFixture("smollm2_decode.jsonl"));
  ASSERT_GE(rows.size(), 300u);
  for (const auto& row : rows) {
    const auto ids = testing::IdsOf(row["ids"]);
    EXPECT_EQ(tok->Decode(ids), row["decoded"].get<std::string>()) << row["ids"].dump();
    EXPECT_EQ(tok->Decode(ids, true), row["decoded_skip_special"].get<std::string>()) << row["ids"].dump();
  }
}

TEST(SmolLM2Tokenizer, GgufMetadataGivesIdsAndEndOfGeneration) {
  KV_GET_SMOL_TOKENIZER(tok);
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->IsEndOfGeneration(2));   // <|im_end|>, the file's EOS
  EXPECT_TRUE(tok->IsEndOfGeneration(0));   // <|endoftext|> closes a document
  EXPECT_FALSE(tok->IsEndOfGeneration(1));  // <|im_start|>
  EXPECT_FALSE(tok->IsEndOfGeneration(216));
  EXPECT_FALSE(tok->IsEndOfGeneration(-1));
  EXPECT_FALSE(tok->IsEndOfGeneration(49152));
  EXPECT_TRUE(tok->IsSpecial(1));
  EXPECT_TRUE(tok->IsSpecial(16));  // <empty_output>, last of the 17 control tokens
  EXPECT_FALSE(tok->IsSpecial(17));
  EXPECT_EQ(tok->chat_format(), ChatFormat::kChatML);
  // add_bos_token is false in the file: no BOS even when asked for specials.
  EXPECT_EQ(tok->Encode("Hi", true), tok->Encode("Hi", false));
}

TEST(SmolLM2Tokenizer, SpecialTokenTextInsideInputIsOneId) {
  KV_GET_SMOL_TOKENIZER(tok);
  const auto ids = tok->Encode("<|im_start|>user\nHi<|im_end|>", false);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  // An unfinished marker is ordinary text.
  const auto partial = tok->Encode("<|im_start", false);
  EXPECT_TRUE(std::find(partial.begin(), partial.end(), 1) == partial.end());
}

TEST(SmolLM2Tokenizer, TokenPieceIsVocabularyFormAndTokenBytesIsRaw) {
  KV_GET_SMOL_TOKENIZER(tok);
  const auto space = tok->Encode(" ", false);
  ASSERT_EQ(space.size(), 1u);
  EXPECT_EQ(tok->TokenPiece(space[0]), "Ġ");
  EXPECT_EQ(tok->TokenBytes(space[0]), " ");
  EXPECT_EQ(tok->TokenPiece(1), "<|im_start|>");
  EXPECT_EQ(tok->TokenBytes(1), "<|im_start|>");
  EXPECT_EQ(tok->TokenBytes(-1), "");
  EXPECT_EQ(tok->TokenPiece(49152), "");
}

TEST(SmolLM2Tokenizer, DecodeSkipsOutOfRangeIdsAndReplacesBrokenUtf8) {
  KV_GET_SMOL_TOKENIZER(tok);
  const auto hi = tok->Encode("Hi", false);
  std::vector<int32_t> ids = {-5};
  ids.insert(ids.end(), hi.begin(), hi.end());
  ids.push_back(1 << 30);
  EXPECT_EQ(tok->Decode(ids), "Hi");
  // The first token of a split emoji alone is an unfinished sequence.
  const auto emoji = tok->Encode("😀", false);
  ASSERT_GT(emoji.size(), 1u);
  EXPECT_EQ(tok->Decode({emoji[0]}), "\xEF\xBF\xBD");
}

TEST(SmolLM2Tokenizer, EncodeSurvivesInvalidUtf8AndCoversEveryByte) {
  KV_GET_SMOL_TOKENIZER(tok);
  // Stray lead bytes, a truncated emoji, NUL and an encoded surrogate: all
  // bytes that have a byte token in this vocabulary.
  const std::string bad = std::string("ok \xC3 end \xF0\x9F\x98") + std::string(1, '\0') + "\xED\xA0\x80";
  const auto ids = tok->Encode(bad, false);
  std::string bytes;
  for (int32_t id : ids) bytes += tok->TokenBytes(id);
  EXPECT_EQ(bytes, bad);
}

TEST(SmolLM2Tokenizer, BytesWithoutAByteTokenBecomeOneFusedUnk) {
  KV_GET_SMOL_TOKENIZER(tok);
  // SmolLM2's vocabulary has no token for 0xFF or 0xFE (bytes never seen in
  // UTF-8 text), so, as tokenizers' fuse_unk does, the run is one <unk>.
  EXPECT_EQ(tok->Encode("\xFF\xFE", false), std::vector<int32_t>{0});
}

// Texts of >= 10K tokens, as an engine prefill would see.
std::string TenThousandTokenText(size_t* n_tokens) {
  std::string text;
  const auto corpus = LoadCorpus();
  *n_tokens = 0;
  for (size_t i = 0; *n_tokens < 10500; i = (i + 1) % corpus.size()) {  // sum overestimates a little
    text += corpus[i].text;
    text += "\n";
    *n_tokens += corpus[i].ids.size() + 1;
  }
  return text;
}

TEST(SmolLM2Tokenizer, EncodesTenThousandTokensWellUnder100Ms) {
  KV_GET_SMOL_TOKENIZER(tok);
  size_t approx = 0;
  const std::string text = TenThousandTokenText(&approx);
  double best_ms = 1e9;
  size_t n = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    n = tok->Encode(text, false).size();
    const auto t1 = std::chrono::steady_clock::now();
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  EXPECT_GE(n, 10000u);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const double limit_ms = 1000;  // sanitizers slow everything ~5-10x
#else
  const double limit_ms = 100;
#endif
  EXPECT_LT(best_ms, limit_ms) << n << " tokens";
  std::printf("[ perf ] encoded %zu tokens (%zu bytes) in %.2f ms\n", n, text.size(), best_ms);
}

TEST(SmolLM2Tokenizer, ConcurrentEncodesAgreeWithSerialOnes) {
  KV_GET_SMOL_TOKENIZER(tok);
  const auto corpus = LoadCorpus();
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < corpus.size(); i += 2) failures[t] += tok->Encode(corpus[i].text, false) != corpus[i].ids;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(failures, ElementsAre(0, 0, 0, 0));
}

}  // namespace
}  // namespace kvstream
