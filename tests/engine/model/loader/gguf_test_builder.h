// Test-only GGUF writer: builds files byte by byte so a test can set any
// field to a bad value (counts, dims, types, offsets, alignment) that a
// well-behaved writer such as gguf-py refuses to produce.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvstream::testing {

using Bytes = std::vector<uint8_t>;

template <typename T>
void Put(Bytes& b, T v) {
  uint8_t raw[sizeof(T)];
  std::memcpy(raw, &v, sizeof(T));
  b.insert(b.end(), raw, raw + sizeof(T));
}
inline void PutStr(Bytes& b, const std::string& s) {
  Put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}

// Encoded metadata values: u32 value type, then the payload.
namespace val {
inline Bytes U32(uint32_t v) { Bytes b; Put<uint32_t>(b, 4); Put(b, v); return b; }
inline Bytes I32(int32_t v) { Bytes b; Put<uint32_t>(b, 5); Put(b, v); return b; }
inline Bytes U64(uint64_t v) { Bytes b; Put<uint32_t>(b, 10); Put(b, v); return b; }
inline Bytes F32(float v) { Bytes b; Put<uint32_t>(b, 6); Put(b, v); return b; }
inline Bytes Bool(bool v) { Bytes b; Put<uint32_t>(b, 7); Put<uint8_t>(b, v ? 1 : 0); return b; }
inline Bytes Str(const std::string& s) { Bytes b; Put<uint32_t>(b, 8); PutStr(b, s); return b; }
inline Bytes StrArray(const std::vector<std::string>& v) {
  Bytes b;
  Put<uint32_t>(b, 9);
  Put<uint32_t>(b, 8);
  Put<uint64_t>(b, v.size());
  for (const auto& s : v) PutStr(b, s);
  return b;
}
inline Bytes I32Array(const std::vector<int32_t>& v) {
  Bytes b;
  Put<uint32_t>(b, 9);
  Put<uint32_t>(b, 5);
  Put<uint64_t>(b, v.size());
  for (int32_t x : v) Put(b, x);
  return b;
}
}  // namespace val

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ne;  // innermost first
  uint32_t type = 0;         // ggml type id (0 = F32)
  Bytes data;
  std::optional<uint64_t> offset;   // default: the aligned running sum
  std::optional<uint32_t> n_dims;   // default: ne.size()
};

struct GgufSpec {
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  std::optional<uint64_t> tensor_count, kv_count;  // default: the real counts
  std::vector<std::pair<std::string, Bytes>> kv;
  std::vector<TensorSpec> tensors;
  uint64_t alignment = 32;  // used for layout only; add "general.alignment" to kv yourself
  bool pad_tail = true;     // pad the last tensor to the alignment

  GgufSpec& Kv(std::string key, Bytes v) {
    kv.emplace_back(std::move(key), std::move(v));
    return *this;
  }
  GgufSpec& F32Tensor(std::string name, std::vector<uint64_t> ne, const std::vector<float>& v) {
    TensorSpec t{std::move(name), std::move(ne), 0, {}, {}, {}};
    t.data.resize(v.size() * 4);
    std::memcpy(t.data.data(), v.data(), t.data.size());
    tensors.push_back(std::move(t));
    return *this;
  }
};

inline Bytes BuildGguf(const GgufSpec& s) {
  Bytes b;
  Put(b, s.magic);
  Put(b, s.version);
  Put<uint64_t>(b, s.tensor_count.value_or(s.tensors.size()));
  Put<uint64_t>(b, s.kv_count.value_or(s.kv.size()));
  for (const auto& [k, v] : s.kv) {
    PutStr(b, k);
    b.insert(b.end(), v.begin(), v.end());
  }
  auto align = [&](uint64_t x) { return (x + s.alignment - 1) / s.alignment * s.alignment; };
  uint64_t running = 0;
  for (const TensorSpec& t : s.tensors) {
    PutStr(b, t.name);
    Put<uint32_t>(b, t.n_dims.value_or(static_cast<uint32_t>(t.ne.size())));
    for (uint64_t n : t.ne) Put(b, n);
    Put(b, t.type);
    Put<uint64_t>(b, t.offset.value_or(running));
    running = align(running + t.data.size());
  }
  b.resize(align(b.size()), 0);
  for (size_t i = 0; i < s.tensors.size(); ++i) {
    const Bytes& d = s.tensors[i].data;
    b.insert(b.end(), d.begin(), d.end());
    if (i + 1 < s.tensors.size() || s.pad_tail) b.resize(align(b.size()), 0);
  }
  return b;
}

inline Bytes ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline uint32_t BitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

}  // namespace kvstream::testing
