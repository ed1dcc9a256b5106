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

// Tiny Llama: hidden 8, 2 heads of 4, 1 KV head, MLP 16, vocab 10, 2 layers.
struct TinyOpts {
  std::string arch = "llama";
  bool output = false;     // untied lm_head
  bool bias = false;       // q/k/v biases
  bool rope_freqs = false;
};

// A small but complete Llama-family GGUF (all F32). Element i of the k-th
// tensor is 1000 * k + i, so every value says where it came from.
inline GgufSpec Tiny(const TinyOpts& o = {}) {
  GgufSpec s;
  const std::string p = o.arch + ".";
  s.Kv("general.architecture", val::Str(o.arch)).Kv("general.name", val::Str("tiny"));
  s.Kv(p + "block_count", val::U32(2)).Kv(p + "embedding_length", val::U32(8));
  s.Kv(p + "feed_forward_length", val::U64(16)).Kv(p + "attention.head_count", val::U32(2));
  s.Kv(p + "attention.head_count_kv", val::I32(1)).Kv(p + "context_length", val::U32(64));
  s.Kv(p + "attention.layer_norm_rms_epsilon", val::F32(1e-6f));
  s.Kv(p + "rope.freq_base", val::F32(500000.0f));
  s.Kv("tokenizer.ggml.model", val::Str("gpt2")).Kv("tokenizer.ggml.pre", val::Str("llama-bpe"));
  s.Kv("tokenizer.ggml.tokens",
       val::StrArray({"<s>", "</s>", "<eot>", "a", "b", "ab", "c", "d", "e", "f"}));
  s.Kv("tokenizer.ggml.token_type", val::I32Array({3, 3, 3, 1, 1, 1, 1, 1, 1, 6}));
  s.Kv("tokenizer.ggml.merges", val::StrArray({"a b"}));
  s.Kv("tokenizer.ggml.bos_token_id", val::U32(0)).Kv("tokenizer.ggml.eos_token_id", val::U32(1));
  s.Kv("tokenizer.ggml.eot_token_id", val::U32(2)).Kv("tokenizer.ggml.add_bos_token", val::Bool(true));
  s.Kv("tokenizer.chat_template", val::Str("{{ messages }}"));
  int k = 0;
  auto add = [&](const std::string& name, std::vector<uint64_t> ne) {
    uint64_t n = 1;
    for (uint64_t e : ne) n *= e;
    std::vector<float> v(n);
    for (uint64_t i = 0; i < n; ++i) v[i] = static_cast<float>(1000 * k + i);
    ++k;
    s.F32Tensor(name, std::move(ne), v);
  };
  add("token_embd.weight", {8, 10});
  add("output_norm.weight", {8});
  if (o.output) add("output.weight", {8, 10});
  if (o.rope_freqs) add("rope_freqs.weight", {2});
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {8});
    add(b + "attn_q.weight", {8, 8});
    add(b + "attn_k.weight", {8, 4});
    add(b + "attn_v.weight", {8, 4});
    if (o.bias) {
      add(b + "attn_q.bias", {8});
      add(b + "attn_k.bias", {4});
      add(b + "attn_v.bias", {4});
    }
    add(b + "attn_output.weight", {8, 8});
    add(b + "ffn_norm.weight", {8});
    add(b + "ffn_gate.weight", {8, 16});
    add(b + "ffn_up.weight", {8, 16});
    add(b + "ffn_down.weight", {16, 8});
  }
  return s;
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
