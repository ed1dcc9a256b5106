#include "engine/tokenizer/bpe_model.h"

#include <queue>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"

namespace kvstream::tok_internal {
namespace {

constexpr int32_t kNoToken = -1;  // byte with no vocabulary entry
constexpr int32_t kDead = -2;     // symbol absorbed by its left neighbour

}  // namespace

absl::StatusOr<BpeModel> BpeModel::Create(const std::vector<std::string>& tokens,
                                          const std::vector<std::string>& merges, int32_t unk_id,
                                          bool ignore_merges) {
  BpeModel m;
  m.unk_id_ = unk_id;
  m.ignore_merges_ = ignore_merges;
  m.vocab_.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!tokens[id].empty()) m.vocab_[tokens[id]] = static_cast<int32_t>(id);
  }
  const auto& table = ByteToCodepoint();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    AppendUtf8(table[b], &ch);
    m.byte_ids_[b] = m.Find(ch);
  }
  m.merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    std::string_view merge = merges[rank];
    const size_t space = merge.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == merge.size() ||
        merge.find(' ', space + 1) != std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merge ", rank, " is '", Av(merge), "'; expected two tokens separated by one space"));
    }
    const std::string_view left = merge.substr(0, space);
    const std::string_view right = merge.substr(space + 1);
    const int32_t left_id = m.Find(left);
    const int32_t right_id = m.Find(right);
    const int32_t merged_id = m.Find(absl::StrCat(Av(left), Av(right)));
    if (left_id < 0 || right_id < 0 || merged_id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merge ", rank, " '", Av(merge), "' names a token missing from the vocabulary ('",
          left_id < 0 ? std::string(left) : (right_id < 0 ? std::string(right) : absl::StrCat(Av(left), Av(right))),
          "')"));
    }
    // A repeated pair keeps its first (best) rank.
    m.merges_.try_emplace(PairKey(left_id, right_id), MergeResult{static_cast<int32_t>(rank), merged_id});
  }
  return m;
}

int32_t BpeModel::Find(std::string_view piece) const {
  auto it = vocab_.find(Av(piece));
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::EncodeWord(std::string_view bytes, std::vector<int32_t>* out) const {
  if (bytes.empty()) return;
  if (ignore_merges_) {
    const int32_t whole = Find(ByteLevelEncode(bytes));
    if (whole >= 0) {
      out->push_back(whole);
      return;
    }
  }
  const int32_t n = static_cast<int32_t>(bytes.size());
  struct Symbol {
    int32_t id;    // token id, kNoToken or kDead
    int32_t prev;  // index of the left neighbour, -1 at the start
    int32_t next;  // index of the right neighbour, -1 at the end
  };
  std::vector<Symbol> syms(n);
  for (int32_t i = 0; i < n; ++i) {
    syms[i] = Symbol{byte_ids_[static_cast<uint8_t>(bytes[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  // A candidate merge of the adjacent symbols (left, right), valid only while
  // both still hold the ids it was made for.
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t left_id;
    int32_t right_id;
    int32_t merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t a = syms[left].id;
    const int32_t b = syms[right].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find(PairKey(a, b));
    if (it != merges_.end()) heap.push(Candidate{it->second.rank, left, right, a, b, it->second.id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = syms[c.left];
    if (left.id != c.left_id || left.next != c.right || syms[c.right].id != c.right_id) continue;  // stale
    Symbol& right = syms[c.right];
    left.id = c.merged_id;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = c.left;
    right.id = kDead;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }
  bool last_was_unknown = false;
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const int32_t id = syms[i].id;
    if (id == kNoToken) {
      // tokenizers' fuse_unk: a run of unknown bytes is one <unk>.
      if (unk_id_ >= 0 && !last_was_unknown) out->push_back(unk_id_);
      last_was_unknown = true;
      continue;
    }
    out->push_back(id);
    last_was_unknown = false;
  }
}

}  // namespace kvstream::tok_internal
