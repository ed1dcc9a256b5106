// Corpus loading and token windows (client/corpus.h), on the shipped
// data/corpus and on a fake tokenizer. No server.
#include "client/corpus.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_tokenizer.h"
#include "tests/test_paths.h"

namespace kvstream::client {
namespace {

using testing::FakeTokenizer;

TEST(NormalizeProse, JoinsWrappedLinesAndKeepsParagraphs) {
  EXPECT_EQ(NormalizeProse("  It is a truth\nuniversally   acknowledged,\n\n\n\"My dear\tMr. Bennet,\"\nsaid his lady.\n"),
            "It is a truth universally acknowledged,\n\n\"My dear Mr. Bennet,\" said his lady.");
  EXPECT_EQ(NormalizeProse("\n\n\n"), "");
}

TEST(Corpus, ShippedCorpusIsThreeNovelsOfProse) {
  auto corpus = Corpus::Load(::kvstream::testing::SourceDir() + "/data/corpus");
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  ASSERT_EQ(corpus->documents().size(), 3u);
  size_t total = 0;
  for (const Document& d : corpus->documents()) {
    EXPECT_GT(d.text.size(), 300000u) << d.name;
    EXPECT_EQ(d.text.find('\r'), std::string::npos) << d.name;
    total += d.text.size();
  }
  EXPECT_LT(total, 2u << 20);  // data/ stays under 2 MB
  EXPECT_NE(corpus->documents()[2].text.find("It is a truth universally acknowledged"), std::string::npos);
}

TEST(Corpus, LoadRejectsAFolderWithoutText) {
  const std::string dir = ::testing::TempDir() + "/empty_corpus_" + std::to_string(getpid());
  std::filesystem::remove_all(dir);  // a previous run's short.txt
  std::filesystem::create_directories(dir);
  EXPECT_EQ(Corpus::Load(dir).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Corpus::Load(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
  std::ofstream(dir + "/short.txt") << "Too short.";
  EXPECT_EQ(Corpus::Load(dir).status().code(), absl::StatusCode::kFailedPrecondition);
  std::filesystem::remove_all(dir);
}

Corpus SmallCorpus() {
  std::string a, b;
  for (int i = 0; i < 400; ++i) a += "Alpha beta gamma delta. ";
  for (int p = 0; p < 40; ++p) {
    for (int i = 0; i < 10; ++i) b += "One two three four. ";
    b += "\n\n";
  }
  return Corpus::FromDocuments({{"a", NormalizeProse(a)}, {"b", NormalizeProse(b)}});
}

TEST(Corpus, TokenWindowIsExactlyNTokensAndSeeded) {
  Corpus corpus = SmallCorpus();
  FakeTokenizer tok;
  for (int32_t n : {1, 17, 300, 900}) {
    std::mt19937_64 a(n), b(n);
    auto w1 = corpus.TokenWindow(tok, n, a);
    auto w2 = corpus.TokenWindow(tok, n, b);
    ASSERT_TRUE(w1.ok()) << w1.status();
    EXPECT_EQ(w1->size(), static_cast<size_t>(n));
    EXPECT_EQ(w1->pieces.size(), static_cast<size_t>(n));
    EXPECT_EQ(w1->ids, w2->ids);
  }
}

TEST(Corpus, TokenWindowLongerThanAnyDocumentIsOutOfRange) {
  Corpus corpus = SmallCorpus();
  FakeTokenizer tok;
  std::mt19937_64 rng(1);
  EXPECT_EQ(corpus.TokenWindow(tok, 100000, rng).status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace kvstream::client
