// GGUF -> LoadedWeights on small synthetic Llama-family files built byte by
// byte: config keys, tokenizer keys, name mapping, the Q/K unpermutation and
// the rejection of inconsistent files.
#include <algorithm>

#include "engine/model/loader/gguf_weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/model/loader/gguf_test_builder.h"

namespace kvstream::loader {
namespace {

using ::kvstream::testing::BuildGguf;
using ::kvstream::testing::Bytes;
using ::kvstream::testing::GgufSpec;
using ::testing::HasSubstr;
namespace val = ::kvstream::testing::val;

using ::kvstream::testing::Tiny;
using ::kvstream::testing::TinyOpts;

struct Built {
  Bytes bytes;
  absl::StatusOr<LoadedWeights> w;
};
Built Load(const GgufSpec& s) {
  Built b{BuildGguf(s), absl::UnknownError("")};
  auto f = ParseGguf(b.bytes);
  b.w = f.ok() ? GgufToWeights(*f) : absl::StatusOr<LoadedWeights>(f.status());
  return b;
}
std::string Msg(const Built& b) { return std::string(b.w.status().message()); }

// Drops the key-value pair `key`.
GgufSpec Without(GgufSpec s, const std::string& key) {
  s.kv.erase(std::remove_if(s.kv.begin(), s.kv.end(), [&](auto& kv) { return kv.first == key; }),
             s.kv.end());
  return s;
}
GgufSpec With(GgufSpec s, const std::string& key, Bytes v) {
  s = Without(std::move(s), key);
  s.Kv(key, std::move(v));
  return s;
}

// Row r of a [rows, cols] tensor.
std::vector<float> Row(const HostTensor& t, int64_t r) {
  const int64_t cols = t.shape[1];
  return {t.data.begin() + r * cols, t.data.begin() + (r + 1) * cols};
}

TEST(GgufLlama, ConfigFromArchitectureKeys) {
  Built b = Load(Tiny());
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  const ModelConfig& c = b.w->config;
  EXPECT_EQ(c.name, "tiny");
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.hidden, 8);
  EXPECT_EQ(c.intermediate, 16);  // stored as u64: any integer width is accepted
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 4);       // no key_length: hidden / heads
  EXPECT_EQ(c.vocab_size, 10);    // no vocab_size key: token count
  EXPECT_EQ(c.context_length, 64);
  EXPECT_EQ(c.rms_eps, 1e-6f);
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(b.w->tensors.size(), 2u + 2u * 9u);
}

// llama.cpp stores head h's rows as (h, d, j) for pair index j; transformers
// wants (h, j, d). With head_dim 4 the GGUF rows 0,1,2,3 of a head hold HF
// rows 0,2,1,3.
TEST(GgufLlama, UnpermutesQAndKRowsForLlama) {
  GgufSpec s = Tiny();
  Built b = Load(s);
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  const HostTensor& q = b.w->tensors.at("model.layers.0.self_attn.q_proj.weight");
  ASSERT_EQ(q.shape, (std::vector<int64_t>{8, 8}));
  const float q0 = 1000.0f * 3;  // attn_q of layer 0 is the 4th tensor
  const int from[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  for (int r = 0; r < 8; ++r) EXPECT_EQ(Row(q, r)[0], q0 + 8 * from[r]) << "q row " << r;
  const HostTensor& k = b.w->tensors.at("model.layers.0.self_attn.k_proj.weight");
  ASSERT_EQ(k.shape, (std::vector<int64_t>{4, 8}));
  for (int r = 0; r < 4; ++r) EXPECT_EQ(Row(k, r)[0], 1000.0f * 4 + 8 * from[r]) << "k row " << r;
  // v is not permuted.
  const HostTensor& v = b.w->tensors.at("model.layers.0.self_attn.v_proj.weight");
  for (int r = 0; r < 4; ++r) EXPECT_EQ(Row(v, r)[0], 1000.0f * 5 + 8 * r);
}

TEST(GgufLlama, MistralIsUnpermutedLikeLlama) {
  Built b = Load(Tiny({.arch = "mistral"}));
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  const HostTensor& q = b.w->tensors.at("model.layers.0.self_attn.q_proj.weight");
  EXPECT_EQ(Row(q, 1)[0], 3000.0f + 8 * 2);
}

TEST(GgufLlama, Qwen2RowsAndBiasesStayInFileOrder) {
  Built b = Load(Tiny({.arch = "qwen2", .bias = true}));
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  EXPECT_TRUE(b.w->config.qkv_bias);
  const HostTensor& q = b.w->tensors.at("model.layers.0.self_attn.q_proj.weight");
  for (int r = 0; r < 8; ++r) EXPECT_EQ(Row(q, r)[0], 3000.0f + 8 * r);
  const HostTensor& qb = b.w->tensors.at("model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(qb.shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(qb.data[1], 6000.0f + 1);
  EXPECT_TRUE(b.w->tensors.contains("model.layers.1.self_attn.v_proj.bias"));
}

TEST(GgufLlama, LlamaBiasesArePermutedLikeTheirWeights) {
  Built b = Load(Tiny({.bias = true}));
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  const HostTensor& qb = b.w->tensors.at("model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(qb.data[1], 6000.0f + 2);  // transformers permutes names with ".attn_q."
}

TEST(GgufLlama, OutputTensorUntiesEmbeddings) {
  Built b = Load(Tiny({.output = true}));
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  EXPECT_FALSE(b.w->config.tie_embeddings);
  ASSERT_TRUE(b.w->tensors.contains("lm_head.weight"));
  EXPECT_EQ(b.w->tensors.at("lm_head.weight").shape, (std::vector<int64_t>{10, 8}));
}

TEST(GgufLlama, KeepsRopeFreqsTensor) {
  Built b = Load(Tiny({.rope_freqs = true}));
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  ASSERT_TRUE(b.w->tensors.contains("rope_freqs"));
  EXPECT_EQ(b.w->tensors.at("rope_freqs").shape, (std::vector<int64_t>{2}));
}

TEST(GgufLlama, TokenizerDataFromMetadata) {
  Built b = Load(Tiny());
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  const TokenizerData& t = b.w->tokenizer;
  EXPECT_EQ(t.model, "gpt2");
  EXPECT_EQ(t.pre, "llama-bpe");
  EXPECT_EQ(t.tokens.size(), 10u);
  EXPECT_EQ(t.tokens[5], "ab");
  EXPECT_EQ(t.token_types[9], TokenType::kByte);
  EXPECT_EQ(t.merges, (std::vector<std::string>{"a b"}));
  EXPECT_EQ(t.bos_id, 0);
  EXPECT_EQ(t.eos_id, 1);
  EXPECT_EQ(t.pad_id, -1);
  EXPECT_EQ(t.extra_eos_ids, (std::vector<int32_t>{2}));
  EXPECT_TRUE(t.add_bos);
  EXPECT_FALSE(t.add_eos);
  EXPECT_EQ(t.chat_template, "{{ messages }}");
}

TEST(GgufLlama, RopeScalingKeysFillConfig) {
  GgufSpec s = Tiny();
  s.Kv("llama.rope.scaling.type", val::Str("linear")).Kv("llama.rope.scaling.factor", val::F32(4));
  s.Kv("llama.rope.scaling.original_context_length", val::U32(16));
  Built b = Load(s);
  ASSERT_TRUE(b.w.ok()) << b.w.status();
  EXPECT_EQ(b.w->config.rope_scaling.type, "linear");
  EXPECT_EQ(b.w->config.rope_scaling.factor, 4.0f);
  EXPECT_EQ(b.w->config.rope_scaling.original_max_position, 16);
}

TEST(GgufLlama, RejectsUnsupportedRopeScalingAndArchitecture) {
  Built yarn = Load(With(Tiny(), "llama.rope.scaling.type", val::Str("yarn")));
  EXPECT_EQ(yarn.w.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(yarn), HasSubstr("'llama.rope.scaling.type': 'yarn' is not supported"));
  Built gpt2 = Load(With(Tiny(), "general.architecture", val::Str("gpt2")));
  EXPECT_EQ(gpt2.w.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(gpt2), HasSubstr("'gpt2' is not supported"));
}

TEST(GgufLlama, RejectsMissingOrMistypedConfigKeys) {
  EXPECT_THAT(Msg(Load(Without(Tiny(), "llama.block_count"))),
              HasSubstr("required key 'llama.block_count' is missing"));
  EXPECT_THAT(Msg(Load(With(Tiny(), "llama.embedding_length", val::Str("8")))),
              HasSubstr("key 'llama.embedding_length': type string, expected an integer"));
  EXPECT_THAT(Msg(Load(With(Tiny(), "llama.block_count", val::U32(0)))),
              HasSubstr("key 'llama.block_count': 0 out of range, expected 1..1024"));
  EXPECT_THAT(Msg(Load(With(Tiny(), "llama.attention.head_count_kv", val::U32(3)))),
              HasSubstr("3 does not divide head_count 2"));
  EXPECT_THAT(Msg(Load(With(Tiny(), "llama.rope.freq_base", val::F32(-1)))),
              HasSubstr("key 'llama.rope.freq_base': -1 out of range"));
  EXPECT_THAT(Msg(Load(With(Tiny(), "llama.rope.dimension_count", val::U32(2)))),
              HasSubstr("partial rotary is not supported"));
}

TEST(GgufLlama, RejectsSpecialTokenIdsOutsideVocab) {
  EXPECT_THAT(Msg(Load(With(Tiny(), "tokenizer.ggml.bos_token_id", val::U32(10)))),
              HasSubstr("key 'tokenizer.ggml.bos_token_id': 10 out of range, expected 0..9"));
  EXPECT_THAT(Msg(Load(With(Tiny(), "tokenizer.ggml.eot_token_id", val::I32(-1)))),
              HasSubstr("eot_token_id': -1 out of range"));
  EXPECT_THAT(Msg(Load(With(Tiny(), "tokenizer.ggml.token_type", val::I32Array({1, 1})))),
              HasSubstr("2 entries, expected one per token (10)"));
  // A vocab_size below the token count: the embedding shape check fires
  // first, and the tokenizer check on its own names the token count.
  EXPECT_THAT(Msg(Load(With(Tiny(), "llama.vocab_size", val::U32(9)))),
              HasSubstr("'token_embd.weight': shape [10, 8], expected [9, 8]"));
  const Bytes bytes = BuildGguf(Tiny());
  auto f = ParseGguf(bytes);
  ASSERT_TRUE(f.ok());
  EXPECT_THAT(std::string(GgufTokenizerData(*f, 9).status().message()),
              HasSubstr("10 tokens, expected at most vocab_size 9"));
}

TEST(GgufLlama, RejectsMissingTensor) {
  GgufSpec s = Tiny();
  s.tensors.erase(std::find_if(s.tensors.begin(), s.tensors.end(),
                               [](auto& t) { return t.name == "blk.1.ffn_up.weight"; }));
  EXPECT_THAT(Msg(Load(s)), HasSubstr("tensor 'model.layers.1.mlp.up_proj.weight' is missing"));
}

TEST(GgufLlama, RejectsShapeThatDisagreesWithConfig) {
  GgufSpec s = Tiny();
  s.tensors[2].ne = {8, 6};  // blk.0.attn_norm.weight
  s.tensors[2].data.resize(48 * 4);
  EXPECT_THAT(Msg(Load(s)), HasSubstr("tensor 'blk.0.attn_norm.weight': shape [6, 8], "
                                      "expected [8] from the config"));
}

TEST(GgufLlama, RejectsUnknownTensorAndLayerOutOfRange) {
  GgufSpec s = Tiny();
  s.tensors[2].name = "blk.0.attn_qkv.weight";
  EXPECT_THAT(Msg(Load(s)), HasSubstr("'blk.0.attn_qkv.weight': not a Llama-family tensor"));
  s = Tiny();
  s.tensors[2].name = "blk.2.attn_norm.weight";
  EXPECT_THAT(Msg(Load(s)), HasSubstr("layer 2, expected 0..1"));
  s = Tiny();
  s.tensors[2].name = "blk.00.attn_norm.weight";  // non-canonical index
  EXPECT_THAT(Msg(Load(s)), HasSubstr("not a Llama-family tensor"));
}

TEST(GgufLlama, RejectsBiasInSomeLayersOnly) {
  GgufSpec s = Tiny();
  s.F32Tensor("blk.1.attn_q.bias", {8}, std::vector<float>(8, 0));
  EXPECT_THAT(Msg(Load(s)), HasSubstr("biases must be in every layer or in none"));
}

TEST(GgufLlama, RejectsTensorDtypeWithoutDequantizer) {
  GgufSpec s = Tiny();
  s.tensors[1].type = 6;  // output_norm as Q5_0: 8 elements are not a 32-block
  EXPECT_THAT(Msg(Load(s)), HasSubstr("not a multiple of the Q5_0 block size"));
  s = Tiny();
  s.tensors[0].type = 24;  // token_embd as I8 (a real type, no dequantizer)
  s.tensors[0].data.resize(80);
  EXPECT_THAT(Msg(Load(s)), HasSubstr("I8 has no dequantizer"));
}

}  // namespace
}  // namespace kvstream::loader
