// The real SmolLM2-135M GGUF loaded through LoadGgufWeights and compared
// with what transformers' GGUF loader gives (tests/fixtures/gguf/
// smollm2_spot_values.json, from tests/oracle/gguf_make_fixtures.py).
// Bound: bit-exact fp32 for every spot value.
#include <filesystem>
#include <fstream>

#include "engine/model/loader/gguf_weights.h"
#include "engine/model/loader/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/model/loader/gguf_test_builder.h"
#include "tests/test_paths.h"

namespace kvstream {
namespace {

using ::kvstream::testing::BitsOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Loaded {
  bool present = false;
  absl::StatusOr<LoadedWeights> weights = absl::UnknownError("not loaded");
  nlohmann::json oracle;
};

// Loads the 98 MB model once for the whole binary (dequantizing 135M
// parameters is the slow part).
const Loaded& Model() {
  static const Loaded* m = [] {
    auto* l = new Loaded;
    const std::string path = ::kvstream::testing::DefaultModelPath();
    l->present = std::filesystem::exists(path);
    if (!l->present) return l;
    l->weights = loader::LoadGgufWeights(path);
    std::ifstream in(::kvstream::testing::FixtureDir() + "/gguf/smollm2_spot_values.json");
    l->oracle = nlohmann::json::parse(in);
    return l;
  }();
  return *m;
}

#define REQUIRE_MODEL()                                                              \
  do {                                                                               \
    if (!Model().present) {                                                          \
      GTEST_SKIP() << "model file absent: " << ::kvstream::testing::DefaultModelPath() \
                   << " (run scripts/setup.sh)";                                     \
    }                                                                                \
    ASSERT_TRUE(Model().weights.ok()) << Model().weights.status();                   \
  } while (0)

TEST(SmolLM2Gguf, LoadsConfigOfSmolLM2_135M) {
  REQUIRE_MODEL();
  const ModelConfig& c = Model().weights->config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.name, "Smollm2 135M 8k Lc100K Mix1 Ep2");
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.hidden, 576);
  EXPECT_EQ(c.intermediate, 1536);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_EQ(c.rope_theta, 100000.0f);
  EXPECT_EQ(c.rms_eps, 1e-5f);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.rope_scaling.type, "");
  EXPECT_EQ(Model().weights->format, "gguf");
  EXPECT_EQ(Model().weights->file_bytes, 98362432);
}

TEST(SmolLM2Gguf, ConfigEqualsTransformersConfig) {
  REQUIRE_MODEL();
  const ModelConfig& c = Model().weights->config;
  const auto& o = Model().oracle["config"];
  EXPECT_EQ(c.n_layers, o["num_hidden_layers"].get<int64_t>());
  EXPECT_EQ(c.hidden, o["hidden_size"].get<int64_t>());
  EXPECT_EQ(c.intermediate, o["intermediate_size"].get<int64_t>());
  EXPECT_EQ(c.n_heads, o["num_attention_heads"].get<int64_t>());
  EXPECT_EQ(c.n_kv_heads, o["num_key_value_heads"].get<int64_t>());
  EXPECT_EQ(c.head_dim, o["head_dim"].get<int64_t>());
  EXPECT_EQ(c.vocab_size, o["vocab_size"].get<int64_t>());
  EXPECT_EQ(c.context_length, o["max_position_embeddings"].get<int64_t>());
  EXPECT_EQ(c.rms_eps, static_cast<float>(o["rms_norm_eps"].get<double>()));
  EXPECT_EQ(c.rope_theta, static_cast<float>(o["rope_theta"].get<double>()));
  EXPECT_EQ(c.tie_embeddings, o["tie_word_embeddings"].get<bool>());
}

TEST(SmolLM2Gguf, HasEveryTensorWithPyTorchShapeAndSourceDtype) {
  REQUIRE_MODEL();
  const auto& t = Model().weights->tensors;
  EXPECT_EQ(t.size(), 2u + 30u * 9u);  // embedding, final norm, 9 per layer; tied: no lm_head
  EXPECT_FALSE(t.contains("lm_head.weight"));
  const HostTensor& emb = t.at("model.embed_tokens.weight");
  EXPECT_EQ(emb.shape, (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(emb.source_dtype, "Q8_0");
  EXPECT_EQ(emb.data.size(), 49152u * 576u);
  const HostTensor& k = t.at("model.layers.0.self_attn.k_proj.weight");
  EXPECT_EQ(k.shape, (std::vector<int64_t>{192, 576}));
  EXPECT_EQ(k.source_dtype, "Q4_1");
  EXPECT_EQ(t.at("model.layers.29.mlp.down_proj.weight").shape,
            (std::vector<int64_t>{576, 1536}));
  EXPECT_EQ(t.at("model.norm.weight").source_dtype, "F32");
}

// Spot values of Q8_0 (embedding), Q4_1 (projections, q/k permuted) and F32
// (norms) tensors, against transformers' state dict.
TEST(SmolLM2Gguf, TensorsMatchTransformersSpotValuesBitExact) {
  REQUIRE_MODEL();
  const auto& tensors = Model().weights->tensors;
  const auto& oracle = Model().oracle["tensors"];
  ASSERT_GE(oracle.size(), 9u);
  for (auto it = oracle.begin(); it != oracle.end(); ++it) {
    SCOPED_TRACE(it.key());
    ASSERT_TRUE(tensors.contains(it.key()));
    const HostTensor& t = tensors.at(it.key());
    EXPECT_EQ(t.shape, it.value()["shape"].get<std::vector<int64_t>>());
    const auto idx = it.value()["index"].get<std::vector<size_t>>();
    const auto bits = it.value()["bits"].get<std::vector<uint32_t>>();
    for (size_t i = 0; i < idx.size(); ++i) {
      ASSERT_LT(idx[i], t.data.size());
      EXPECT_EQ(BitsOf(t.data[idx[i]]), bits[i])
          << "flat index " << idx[i] << ": got " << t.data[idx[i]];
    }
  }
}

// Rows 0..3 of q_proj: under llama.cpp's permutation they would be rows 0,
// 32, 1, 33 of head 0, so any permutation error shows here.
TEST(SmolLM2Gguf, QProjRowsAreUnpermutedLikeTransformers) {
  REQUIRE_MODEL();
  const HostTensor& q = Model().weights->tensors.at("model.layers.0.self_attn.q_proj.weight");
  const auto bits = Model().oracle["q_proj_rows_0_3_first8"]["bits"].get<std::vector<uint32_t>>();
  ASSERT_EQ(bits.size(), 32u);
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 8; ++c) {
      EXPECT_EQ(BitsOf(q.data[r * 576 + c]), bits[r * 8 + c]) << "row " << r << " col " << c;
    }
  }
}

TEST(SmolLM2Gguf, TokenizerDataFromMetadata) {
  REQUIRE_MODEL();
  const TokenizerData& t = Model().weights->tokenizer;
  EXPECT_EQ(t.model, "gpt2");
  EXPECT_EQ(t.pre, "smollm");
  ASSERT_EQ(t.tokens.size(), 49152u);
  EXPECT_EQ(t.tokens[0], "<|endoftext|>");
  EXPECT_EQ(t.tokens[1], "<|im_start|>");
  EXPECT_EQ(t.tokens[2], "<|im_end|>");
  ASSERT_EQ(t.token_types.size(), 49152u);
  EXPECT_EQ(t.token_types[1], TokenType::kControl);
  EXPECT_EQ(t.token_types[17], TokenType::kNormal);
  ASSERT_EQ(t.merges.size(), 48900u);
  EXPECT_EQ(t.merges[0], "\xC4\xA0 t");  // "Ġ t"
  EXPECT_EQ(t.bos_id, 1);
  EXPECT_EQ(t.eos_id, 2);
  EXPECT_EQ(t.pad_id, 2);
  EXPECT_EQ(t.unk_id, 0);
  EXPECT_FALSE(t.add_bos);
  EXPECT_FALSE(t.add_eos);
  EXPECT_TRUE(t.extra_eos_ids.empty());
  EXPECT_THAT(t.chat_template, StartsWith("{% for message in messages %}"));
}

TEST(SmolLM2Gguf, MetadataOnlyPassSkipsTensorData) {
  REQUIRE_MODEL();
  auto m = loader::OpenGguf(::kvstream::testing::DefaultModelPath());
  ASSERT_TRUE(m.ok()) << m.status();
  auto w = loader::GgufToWeights(m->gguf, /*dequantize=*/false);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->tensors.empty());
  EXPECT_EQ(w->config.n_layers, 30);
  EXPECT_EQ(w->tokenizer.tokens.size(), 49152u);
}

TEST(SmolLM2Gguf, LoadWeightsRejectsMissingPathAndUnknownExtension) {
  auto missing = LoadWeights("/nonexistent/model.gguf");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto wrong = LoadWeights(::kvstream::testing::FixtureDir() + "/gguf/all_types_expected.json");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  // all_types.gguf is valid GGUF but holds no Llama model.
  auto not_llama = LoadWeights(::kvstream::testing::FixtureDir() + "/gguf/all_types.gguf");
  EXPECT_FALSE(not_llama.ok());
  EXPECT_THAT(std::string(not_llama.status().message()), HasSubstr("all_types.gguf: gguf:"));
}

}  // namespace
}  // namespace kvstream
