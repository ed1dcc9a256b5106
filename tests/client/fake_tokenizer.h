// A stand-in for the server's tokenizer in client tests: words (with their
// leading space), single digits, single punctuation marks and newlines are
// one token each; <|im_start|> and <|im_end|> too when `chatml`. Pieces
// concatenate back to the text.
#pragma once

#include <cctype>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/server_calls.h"

namespace kvstream::client::testing {

class FakeTokenizer final : public TextTokenizer {
 public:
  explicit FakeTokenizer(bool chatml = true) : chatml_(chatml) {}

  absl::StatusOr<Tokens> Tokenize(const std::string& text) override {
    ++calls;
    Tokens out;
    size_t i = 0;
    while (i < text.size()) {
      size_t end = i + 1;
      bool special = false;
      for (const char* s : {"<|im_start|>", "<|im_end|>"}) {
        if (chatml_ && text.compare(i, std::string(s).size(), s) == 0) {
          end = i + std::string(s).size();
          special = true;
        }
      }
      if (!special) {
        size_t j = i;
        if (text[j] == ' ') ++j;
        if (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) {
          while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
          end = j;
        }
      }
      Add(text.substr(i, end - i), out);
      i = end;
    }
    return out;
  }

  // The id `piece` got (-1 if never seen).
  int32_t IdOf(const std::string& piece) const {
    auto it = vocab_.find(piece);
    return it == vocab_.end() ? -1 : it->second;
  }
  const std::string& PieceOf(int32_t id) const { return pieces_.at(id); }

  int calls = 0;

 private:
  void Add(const std::string& piece, Tokens& out) {
    auto [it, inserted] = vocab_.try_emplace(piece, static_cast<int32_t>(vocab_.size()));
    if (inserted) pieces_[it->second] = piece;
    out.ids.push_back(it->second);
    out.pieces.push_back(piece);
  }

  bool chatml_;
  std::map<std::string, int32_t> vocab_;
  std::map<int32_t, std::string> pieces_;
};

// Sentences "Word one two three four five six." repeated: a sentence end
// every 8 tokens.
inline Tokens Filler(FakeTokenizer& tok, int sentences) {
  std::string text;
  for (int i = 0; i < sentences; ++i) absl::StrAppend(&text, " Word one two three four five six.");
  return *tok.Tokenize(text);
}

}  // namespace kvstream::client::testing
