#include "client/corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace kvstream::client {
namespace {

// Characters of text fetched per wanted token: English prose runs about 4.5
// characters per token; the window grows if that was not enough.
constexpr size_t kCharsPerTokenGuess = 6;

}  // namespace

std::string NormalizeProse(const std::string& raw) {
  std::string out;
  std::string paragraph;
  auto flush = [&] {
    if (paragraph.empty()) return;
    if (!out.empty()) out += "\n\n";
    out += paragraph;
    paragraph.clear();
  };
  for (absl::string_view line : absl::StrSplit(raw, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) {
      flush();
      continue;
    }
    for (char c : line) {
      if (c == '\t' || c == '\r') c = ' ';
      if (c == ' ' && (paragraph.empty() || paragraph.back() == ' ')) continue;
      paragraph += c;
    }
    if (!paragraph.empty() && paragraph.back() != ' ') paragraph += ' ';
  }
  flush();
  // Each paragraph ends in the space added after its last line.
  std::string cleaned;
  cleaned.reserve(out.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == ' ' && (i + 1 == out.size() || out[i + 1] == '\n')) continue;
    cleaned += out[i];
  }
  return cleaned;
}

absl::StatusOr<Corpus> Corpus::Load(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".txt") files.push_back(entry.path());
  }
  if (ec) return absl::NotFoundError(absl::StrCat("corpus folder ", dir, ": ", ec.message()));
  if (files.empty()) return absl::NotFoundError(absl::StrCat("no .txt file in corpus folder ", dir));
  std::sort(files.begin(), files.end());
  std::vector<Document> docs;
  for (const fs::path& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    Document doc{path.stem().string(), NormalizeProse(buffer.str())};
    if (doc.text.size() < 10000) {
      return absl::FailedPreconditionError(
          absl::StrCat("corpus file ", path.string(), " holds ", doc.text.size(), " characters (need >= 10000)"));
    }
    docs.push_back(std::move(doc));
  }
  return FromDocuments(std::move(docs));
}

Corpus Corpus::FromDocuments(std::vector<Document> docs) {
  Corpus c;
  c.docs_ = std::move(docs);
  return c;
}

absl::StatusOr<Tokens> Corpus::TokenWindow(TextTokenizer& tokenizer, int32_t n, std::mt19937_64& rng) const {
  std::vector<double> weights;
  for (const Document& d : docs_) weights.push_back(static_cast<double>(d.text.size()));
  if (n < 1 || docs_.empty()) return absl::InvalidArgumentError("TokenWindow needs n >= 1 and a document");
  const size_t doc_index = std::discrete_distribution<size_t>(weights.begin(), weights.end())(rng);
  const std::string& text = docs_[doc_index].text;
  size_t want = static_cast<size_t>(n) * kCharsPerTokenGuess;
  // Start at a paragraph, early enough that `want` characters remain.
  const size_t latest = text.size() > want ? text.size() - want : 0;
  size_t start = std::uniform_int_distribution<size_t>(0, latest)(rng);
  if (size_t p = text.rfind("\n\n", start); p != std::string::npos && start > 0) {
    start = p + 2;
  } else {
    start = 0;
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    const std::string span = text.substr(start, want);
    auto tokens = tokenizer.Tokenize(span);
    if (!tokens.ok()) return tokens.status();
    if (tokens->size() >= static_cast<size_t>(n)) {
      tokens->ids.resize(static_cast<size_t>(n));
      tokens->pieces.resize(static_cast<size_t>(n));
      return tokens;
    }
    if (start + want >= text.size()) {
      if (start == 0) break;
      start = 0;  // not enough left after `start`: take the document from its beginning
    }
    want *= 2;
  }
  return absl::OutOfRangeError(absl::StrCat("corpus document ", docs_[doc_index].name, " has fewer than ", n,
                                            " tokens; use shorter prompts or contexts"));
}

}  // namespace kvstream::client
