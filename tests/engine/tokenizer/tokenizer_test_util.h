// Shared by the tokenizer tests: fixture readers, the bundled SmolLM2
// tokenizer (through the real GGUF loader), and tiny hand-made vocabularies.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/loader/weights.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"

namespace kvstream::testing {

inline std::string TokenizerFixture(const std::string& name) { return FixtureDir() + "/tokenizer/" + name; }

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::vector<nlohmann::json> rows;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

inline std::vector<int32_t> IdsOf(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

// One line of smollm2_corpus.jsonl (see tests/oracle/tokenizer_make_fixture.py).
struct CorpusEntry {
  std::string text;
  std::vector<int32_t> ids;          // transformers, add_special_tokens=False
  std::vector<int32_t> ids_special;  // add_special_tokens=True
  std::string decoded;               // decode(ids)
  std::string decoded_skip_special;  // decode(ids, skip_special_tokens=True)
};

inline std::vector<CorpusEntry> LoadCorpus() {
  std::vector<CorpusEntry> out;
  for (const auto& j : ReadJsonl(TokenizerFixture("smollm2_corpus.jsonl"))) {
    out.push_back({j["text"], IdsOf(j["ids"]), IdsOf(j["ids_special"]), j["decoded"], j["decoded_skip_special"]});
  }
  return out;
}

// TokenizerData of the bundled model, read once per test binary through
// LoadWeights (the path the server uses).
inline const absl::StatusOr<TokenizerData>& GgufTokenizerData() {
  static const auto* data = new absl::StatusOr<TokenizerData>([]() -> absl::StatusOr<TokenizerData> {
    auto w = LoadWeights(DefaultModelPath());
    if (!w.ok()) return w.status();
    return std::move(w->tokenizer);
  }());
  return *data;
}

// The SmolLM2 tokenizer built from the GGUF, or nullptr with *why set.
inline const Tokenizer* SmolTokenizer(std::string* why) {
  static const auto* tok = new absl::StatusOr<std::unique_ptr<Tokenizer>>(
      []() -> absl::StatusOr<std::unique_ptr<Tokenizer>> {
        const auto& data = GgufTokenizerData();
        if (!data.ok()) return data.status();
        return Tokenizer::Create(*data);
      }());
  if (!tok->ok()) {
    *why = std::string(tok->status().message());
    return nullptr;
  }
  return tok->value().get();
}

#define KV_GET_SMOL_TOKENIZER(var)                                                          \
  std::string var##_why;                                                                    \
  const ::kvstream::Tokenizer* var = ::kvstream::testing::SmolTokenizer(&var##_why);        \
  if (var == nullptr) GTEST_SKIP() << "bundled model unavailable (run scripts/setup.sh): " \
                                   << var##_why

// A byte-level vocabulary with the 256 byte characters as ids 0..255, then
// `extra` tokens (vocabulary form) from id 256. No merges, pre "gpt2".
inline TokenizerData TinyByteLevelData(const std::vector<std::string>& extra = {}) {
  TokenizerData d;
  d.pre = "gpt2";
  for (int b = 0; b < 256; ++b) d.tokens.push_back(tok_internal::ByteLevelEncode(std::string(1, static_cast<char>(b))));
  for (const auto& t : extra) d.tokens.push_back(t);
  d.token_types.assign(d.tokens.size(), TokenType::kNormal);
  return d;
}

// Adds a control token (e.g. "<|im_start|>") and returns its id.
inline int32_t AddControl(TokenizerData& d, const std::string& text) {
  d.tokens.push_back(text);
  d.token_types.push_back(TokenType::kControl);
  return static_cast<int32_t>(d.tokens.size() - 1);
}

}  // namespace kvstream::testing
