// The prose that bench prompts and eval filler are cut from: every .txt
// file of a folder (data/corpus: three Jane Austen novels, public domain,
// from Debian's r-cran-janeaustenr; see data/README.md).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/server_calls.h"

namespace kvstream::client {

struct Document {
  std::string name;  // file name without .txt
  std::string text;  // NormalizeProse()d
};

// Hard-wrapped lines of a paragraph joined with spaces, runs of spaces
// collapsed, paragraphs separated by one blank line ("\n\n"), no leading or
// trailing whitespace.
std::string NormalizeProse(const std::string& raw);

class Corpus {
 public:
  // Every *.txt of `dir`, sorted by name. NotFound when there is none;
  // FailedPrecondition when one is shorter than 10,000 characters.
  static absl::StatusOr<Corpus> Load(const std::string& dir);
  static Corpus FromDocuments(std::vector<Document> docs);  // for tests

  const std::vector<Document>& documents() const { return docs_; }

  // Exactly `n` tokens of running text from a random place (document chosen
  // in proportion to its length, start at a paragraph), tokenized by
  // `tokenizer`. OutOfRange when no document holds that many tokens.
  absl::StatusOr<Tokens> TokenWindow(TextTokenizer& tokenizer, int32_t n, std::mt19937_64& rng) const;

 private:
  std::vector<Document> docs_;
};

}  // namespace kvstream::client
