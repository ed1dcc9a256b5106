// ParseTokenizerJson: the tokenizer.json transformers writes for the bundled
// GGUF (generated at test time by tests/oracle/tokenizer_save_json.py) must
// tokenize exactly like the GGUF; small hand-written files cover each field;
// malformed input gives an error Status, never a crash.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace kvstream {
namespace {

using ::testing::ElementsAre;
using json = nlohmann::json;

// ---- generated from the GGUF by transformers --------------------------------

TEST(TokenizerJson, TransformersJsonForTheGgufEncodesCorpusLikeTheGguf) {
  KV_GET_SMOL_TOKENIZER(gguf_tok);
  if (testing::Python().empty()) GTEST_SKIP() << "no venv python (run scripts/setup.sh)";
  const std::string dir = ::testing::TempDir() + "kvstream_tokenizer_json_" + std::to_string(getpid());
  const std::string cmd = testing::Python() + " " + testing::SourceDir() + "/tests/oracle/tokenizer_save_json.py --model '" +
                          testing::DefaultModelPath() + "' --out-dir '" + dir + "' > '" + dir + ".log' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    GTEST_SKIP() << "transformers could not write tokenizer.json (see " << dir << ".log)";
  }
  auto data = ParseTokenizerJson(testing::ReadFileOrEmpty(dir + "/tokenizer.json"),
                                 testing::ReadFileOrEmpty(dir + "/tokenizer_config.json"));
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + ".log");
  ASSERT_TRUE(data.ok()) << data.status();
  const TokenizerData& gguf = *testing::GgufTokenizerData();
  EXPECT_EQ(data->tokens, gguf.tokens);
  EXPECT_EQ(data->merges, gguf.merges);
  EXPECT_EQ(data->token_types, gguf.token_types);  // 17 control tokens, the rest normal
  // NOTE(tokenizer): eos_id is not compared: transformers' GGUF converter
  // saves eos_token = the BOS text (<|im_start|>), a converter bug.
  auto tok = Tokenizer::Create(*std::move(data));
  ASSERT_TRUE(tok.ok()) << tok.status();
  for (const auto& e : testing::LoadCorpus()) {
    EXPECT_EQ((*tok)->Encode(e.text, false), e.ids) << "text: " << e.text;
    EXPECT_EQ((*tok)->Encode(e.text, true), gguf_tok->Encode(e.text, true)) << "text: " << e.text;
  }
}

// ---- hand-written files ------------------------------------------------------

// Byte characters for 'a', 'b', 'c', ' ' (as "Ġ") plus "ab", "abc".
json TinyJson() {
  json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"Ġ", 3}, {"ab", 4}, {"abc", 5}, {"1", 6}, {"2", 7}};
  return {
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b", "ab c"})}}},
      {"added_tokens", json::array({{{"id", 8}, {"content", "<|x|>"}, {"special", true}},
                                    {{"id", 9}, {"content", "<tool>"}, {"special", false}}})},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
  };
}

absl::StatusOr<TokenizerData> Parse(const json& tok, const json& config = nullptr) {
  return ParseTokenizerJson(tok.dump(), config.is_null() ? "" : config.dump());
}

TEST(TokenizerJson, MergesAsPairsParseLikeMergesAsStrings) {
  json pairs = TinyJson();
  pairs["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"ab", "c"})});
  auto a = Parse(TinyJson());
  auto b = Parse(pairs);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_THAT(b->merges, ElementsAre("a b", "ab c"));
  EXPECT_EQ(a->merges, b->merges);
  auto tok = Tokenizer::Create(*std::move(b));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_THAT((*tok)->Encode("abc<|x|>ab<tool>", false), ElementsAre(5, 8, 4, 9));
}

TEST(TokenizerJson, AddedTokensBecomeControlOrUserDefinedAndMayExtendTheVocabulary) {
  auto d = Parse(TinyJson());
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->tokens.size(), 10u);
  EXPECT_EQ(d->tokens[8], "<|x|>");
  EXPECT_EQ(d->token_types[8], TokenType::kControl);
  EXPECT_EQ(d->token_types[9], TokenType::kUserDefined);
  EXPECT_EQ(d->token_types[0], TokenType::kNormal);
}

TEST(TokenizerJson, PreTokenizerSequenceBecomesRegexStagesInOrder) {
  json j = TinyJson();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         json::array({{{"type", "Split"}, {"pattern", {{"Regex", "\\p{N}{1,3}"}}}, {"behavior", "Isolated"}},
                                      {{"type", "Split"}, {"pattern", {{"String", "a.b"}}}, {"behavior", "Isolated"}},
                                      {{"type", "Digits"}, {"individual_digits", true}},
                                      {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  auto d = Parse(j);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->pre_regexes, ElementsAre("\\p{N}{1,3}", "a\\.b", "\\p{N}"));
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"use_regex", false}};
  d = Parse(j);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->pre_regexes, ElementsAre("(?s:.+)"));  // one piece, no split
}

TEST(TokenizerJson, PostProcessorTemplateSetsBosAndConfigOverridesIt) {
  json j = TinyJson();
  j["post_processor"] = {
      {"type", "Sequence"},
      {"processors", json::array({{{"type", "ByteLevel"}},
                                  {{"type", "TemplateProcessing"},
                                   {"single", json::array({{{"SpecialToken", {{"id", "<|x|>"}, {"type_id", 0}}}},
                                                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}})}};
  auto d = Parse(j);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(d->add_bos);
  EXPECT_EQ(d->bos_id, 8);
  EXPECT_FALSE(d->add_eos);
  d = Parse(j, {{"add_bos_token", false}});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->add_bos);
}

TEST(TokenizerJson, ConfigGivesSpecialTokensChatTemplateAndFlags) {
  json config = {{"bos_token", {{"content", "<|x|>"}, {"lstrip", false}}},
                 {"eos_token", "<tool>"},
                 {"pad_token", "a"},
                 {"add_bos_token", true},
                 {"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}},
                                                {{"name", "default"}, {"template", "<|im_start|><|im_end|>"}}})}};
  json j = TinyJson();
  j["model"]["ignore_merges"] = true;
  auto d = Parse(j, config);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->bos_id, 8);
  EXPECT_EQ(d->eos_id, 9);
  EXPECT_EQ(d->pad_id, 0);
  EXPECT_TRUE(d->add_bos);
  EXPECT_TRUE(d->ignore_merges);
  EXPECT_EQ(d->chat_template, "<|im_start|><|im_end|>");
  config["chat_template"] = "plain";
  d = Parse(j, config);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->chat_template, "plain");
}

TEST(TokenizerJson, MalformedFilesAreInvalidArgument) {
  const auto with = [](const char* ptr, json v) {
    json j = TinyJson();
    j[json::json_pointer(ptr)] = std::move(v);
    return j.dump();
  };
  const std::string cases[] = {
      "", "not json", "[]", "{}", "{\"model\": 3}",
      with("/model/vocab", json::array()),
      with("/model/vocab/a", "zero"),
      with("/model/vocab/a", -1),
      with("/model/vocab/a", int64_t{1} << 40),
      with("/model/vocab/b", 0),  // id used twice
      with("/model/merges", "a b"),
      with("/model/merges/0", json::array({"a"})),
      with("/model/merges/0", 7),
      with("/added_tokens", json::object()),
      with("/added_tokens/0/id", "8"),
      with("/added_tokens/0/content", ""),
      with("/added_tokens/0/id", int64_t{1} << 40),
      with("/pre_tokenizer", {{"type", 5}}),
      with("/pre_tokenizer", {{"type", "Sequence"}}),
      with("/pre_tokenizer", {{"type", "Split"}, {"behavior", "Isolated"}}),
  };
  for (const std::string& text : cases) {
    auto d = ParseTokenizerJson(text, "");
    ASSERT_FALSE(d.ok()) << text;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << text << "\n" << d.status();
  }
  EXPECT_EQ(ParseTokenizerJson(TinyJson().dump(), "{").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Parse(TinyJson(), {{"eos_token", "<nope>"}}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerJson, UnsupportedFeaturesAreFailedPrecondition) {
  const auto with = [](const char* ptr, json v) {
    json j = TinyJson();
    j[json::json_pointer(ptr)] = std::move(v);
    return j;
  };
  const json cases[] = {
      with("/model/type", "Unigram"),
      with("/model/type", "WordPiece"),
      with("/model/continuing_subword_prefix", "##"),
      with("/model/merges/0", json::array({"a b", "c"})),  // space inside a token
      with("/pre_tokenizer/add_prefix_space", true),
      with("/pre_tokenizer", {{"type", "Whitespace"}}),
      with("/pre_tokenizer", {{"type", "Digits"}}),  // no ByteLevel anywhere
      with("/pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Removed"}}),
      with("/normalizer", {{"type", "Lowercase"}}),
  };
  for (const json& j : cases) {
    auto d = Parse(j);
    ASSERT_FALSE(d.ok()) << j.dump();
    EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << j.dump() << "\n" << d.status();
  }
  EXPECT_TRUE(Parse(with("/normalizer", {{"type", "NFC"}})).ok());  // accepted, see tokenizer_json.cc
}

TEST(TokenizerJson, EveryTruncatedPrefixIsRejectedWithoutCrashing) {
  const std::string full = TinyJson().dump();
  ASSERT_TRUE(ParseTokenizerJson(full, "").ok());
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_FALSE(ParseTokenizerJson(full.substr(0, n), "").ok()) << n;
  }
}

TEST(TokenizerJson, RandomlyCorruptedFilesNeverCrashParseCreateOrEncode) {
  const std::string full = TinyJson().dump();
  std::mt19937 rng(3);
  const std::string alphabet = "{}[]\":,0123456789-abcĠ <|>\\ntrue";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text = full;
    for (int k = 1 + rng() % 3; k > 0; --k) text[rng() % text.size()] = alphabet[rng() % alphabet.size()];
    auto d = ParseTokenizerJson(text, "");
    if (!d.ok()) continue;
    auto tok = Tokenizer::Create(*std::move(d));
    if (!tok.ok()) continue;
    const auto ids = (*tok)->Encode("abc ab<|x|>12 c", true);
    (void)(*tok)->Decode(ids);
  }
}

TEST(TokenizerJson, ParsedDataWithBrokenMergesIsRejectedByCreate) {
  json j = TinyJson();
  j["model"]["merges"] = json::array({"a q"});
  auto d = Parse(j);
  ASSERT_TRUE(d.ok()) << d.status();  // the parser does not look inside merges
  EXPECT_EQ(Tokenizer::Create(*std::move(d)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvstream
