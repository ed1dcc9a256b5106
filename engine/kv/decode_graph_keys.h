// Graph keys for strategies whose prepared decode steps depend on which
// sequences are in the batch (their own buffers are baked into the captured
// graph): one key per distinct identity vector (sequence ids, whatever else
// moves a buffer, padded rows). Ids, not addresses: a new cache may reuse a
// freed one's address. Bounded: keys only grow (ids are never reused), so
// past kMaxKeys the old sets are forgotten (their sequences are long gone).
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace kvstream {

class DecodeGraphKeys {
 public:
  static constexpr size_t kMaxKeys = 4096;

  int64_t KeyFor(std::vector<uint64_t> identity) {
    auto it = keys_.find(identity);
    if (it != keys_.end()) return it->second;
    if (keys_.size() >= kMaxKeys) keys_.clear();
    const int64_t key = next_key_++;
    keys_.emplace(std::move(identity), key);
    return key;
  }

 private:
  std::map<std::vector<uint64_t>, int64_t> keys_;
  int64_t next_key_ = 1;
};

}  // namespace kvstream
