// Hugging Face folders: config.json parsing, the committed 2-layer fixture
// against what transformers loads from it (bit-exact fp32), sharded folders
// and broken folders built in a temp dir.
#include <fstream>

#include "engine/model/loader/hf_config.h"
#include "engine/model/loader/hf_weights.h"
#include "engine/model/loader/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/model/loader/safetensors_test_util.h"
#include "tests/test_paths.h"

namespace kvstream::loader {
namespace {

namespace fs = std::filesystem;
using ::kvstream::testing::BitsOf;
using ::kvstream::testing::F32Entry;
using ::kvstream::testing::MakeF32Safetensors;
using ::kvstream::testing::TempDir;
using ::kvstream::testing::WriteFile;
using ::kvstream::testing::WriteText;
using ::testing::HasSubstr;
using nlohmann::json;

fs::path TinyDir() { return fs::path(::kvstream::testing::FixtureDir()) / "hf_tiny"; }
json Expected() {
  std::ifstream in(TinyDir() / "kvstream_expected.json");
  return json::parse(in);
}
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// A copy of the fixture folder without model weights, for variants.
void CopyTextFiles(const fs::path& to) {
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(TinyDir() / f, to / f);
  }
}

TEST(HfFolder, LoadsTinyLlamaConfig) {
  auto w = LoadWeights(TinyDir().string());
  ASSERT_TRUE(w.ok()) << w.status();
  const ModelConfig& c = w->config;
  const json e = Expected()["config"];
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.name, "hf_tiny");  // no _name_or_path: the folder name
  EXPECT_EQ(c.n_layers, e["num_hidden_layers"].get<int64_t>());
  EXPECT_EQ(c.hidden, e["hidden_size"].get<int64_t>());
  EXPECT_EQ(c.intermediate, e["intermediate_size"].get<int64_t>());
  EXPECT_EQ(c.n_heads, e["num_attention_heads"].get<int64_t>());
  EXPECT_EQ(c.n_kv_heads, e["num_key_value_heads"].get<int64_t>());
  EXPECT_EQ(c.head_dim, e["head_dim"].get<int64_t>());
  EXPECT_EQ(c.vocab_size, e["vocab_size"].get<int64_t>());
  EXPECT_EQ(c.context_length, e["max_position_embeddings"].get<int64_t>());
  EXPECT_EQ(c.rms_eps, static_cast<float>(e["rms_norm_eps"].get<double>()));
  const json& rope = e["rope_parameters"];
  EXPECT_EQ(c.rope_theta, static_cast<float>(rope["rope_theta"].get<double>()));
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.factor, 2.0f);
  EXPECT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 128);
  EXPECT_FALSE(c.tie_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(w->format, "safetensors");
  EXPECT_EQ(w->file_bytes, static_cast<int64_t>(fs::file_size(TinyDir() / "model.safetensors")));
}

TEST(HfFolder, TensorsMatchTransformersBitExact) {
  auto w = LoadWeights(TinyDir().string());
  ASSERT_TRUE(w.ok()) << w.status();
  const json e = Expected()["tensors"];
  ASSERT_EQ(w->tensors.size(), e.size());
  for (auto it = e.begin(); it != e.end(); ++it) {
    SCOPED_TRACE(it.key());
    ASSERT_TRUE(w->tensors.contains(it.key()));
    const HostTensor& t = w->tensors.at(it.key());
    EXPECT_EQ(t.shape, it.value()["shape"].get<std::vector<int64_t>>());
    const std::string dt = it.value()["dtype"].get<std::string>();
    EXPECT_EQ(t.source_dtype, dt == "float32" ? "F32" : dt == "float16" ? "F16" : "BF16");
    const auto idx = it.value()["index"].get<std::vector<size_t>>();
    const auto bits = it.value()["bits"].get<std::vector<uint32_t>>();
    for (size_t i = 0; i < idx.size(); ++i) {
      ASSERT_LT(idx[i], t.data.size());
      EXPECT_EQ(BitsOf(t.data[idx[i]]), bits[i]) << "flat index " << idx[i];
    }
  }
}

TEST(HfFolder, TokenizerFromTokenizerJson) {
  auto w = LoadWeights(TinyDir().string());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(static_cast<int64_t>(w->tokenizer.tokens.size()),
            Expected()["n_tokens"].get<int64_t>());
  EXPECT_EQ(w->tokenizer.tokens[1], "<|im_start|>");
  EXPECT_THAT(w->tokenizer.chat_template, HasSubstr("<|im_start|>"));
}

// The fixture's tensors re-split into two F32 shards with an index.
TEST(HfFolder, ShardedFolderLoadsTheSameTensors) {
  auto single = LoadWeights(TinyDir().string());
  ASSERT_TRUE(single.ok()) << single.status();
  TempDir dir;
  CopyTextFiles(dir.path());
  std::vector<F32Entry> shard[2];
  json weight_map = json::object();
  int i = 0;
  for (const auto& [name, t] : single->tensors) {
    const int s = i++ % 2;
    shard[s].push_back({name, t.shape, t.data});
    weight_map[name] = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
  }
  WriteFile(dir.path() / "model-00001-of-00002.safetensors", MakeF32Safetensors(shard[0]));
  WriteFile(dir.path() / "model-00002-of-00002.safetensors", MakeF32Safetensors(shard[1]));
  WriteText(dir.path() / "model.safetensors.index.json",
            json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump());
  auto sharded = LoadWeights(dir.path().string());
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  ASSERT_EQ(sharded->tensors.size(), single->tensors.size());
  for (const auto& [name, t] : single->tensors) {
    EXPECT_EQ(sharded->tensors.at(name).data, t.data) << name;
    EXPECT_EQ(sharded->tensors.at(name).source_dtype, "F32");
  }

  // An index entry whose tensor the shard lacks, and one escaping the folder.
  weight_map["model.extra.weight"] = "model-00001-of-00002.safetensors";
  WriteText(dir.path() / "model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
  EXPECT_THAT(Msg(LoadWeights(dir.path().string()).status()),
              HasSubstr("'model.extra.weight' is listed in the index but not stored"));
  weight_map.erase("model.extra.weight");
  weight_map["model.norm.weight"] = "../model.safetensors";
  WriteText(dir.path() / "model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
  EXPECT_THAT(Msg(LoadWeights(dir.path().string()).status()),
              HasSubstr("expected a *.safetensors file name in the folder"));
}

// A small folder whose single shard is written from `entries`.
absl::StatusOr<LoadedWeights> LoadVariant(const TempDir& dir, const std::vector<F32Entry>& e,
                                          const std::string& config_json = "") {
  if (config_json.empty()) {
    CopyTextFiles(dir.path());
  } else {
    fs::copy_file(TinyDir() / "tokenizer.json", dir.path() / "tokenizer.json");
    WriteText(dir.path() / "config.json", config_json);
  }
  WriteFile(dir.path() / "model.safetensors", MakeF32Safetensors(e));
  return LoadHfFolder(dir.path().string());
}

std::vector<F32Entry> FixtureEntries() {
  auto w = LoadWeights(TinyDir().string());
  std::vector<F32Entry> out;
  if (!w.ok()) return out;
  for (const auto& [name, t] : w->tensors) out.push_back({name, t.shape, t.data});
  return out;
}

TEST(HfFolder, RejectsShapeDisagreeingWithConfig) {
  std::vector<F32Entry> e = FixtureEntries();
  ASSERT_FALSE(e.empty());
  for (F32Entry& x : e) {
    if (x.name == "model.layers.1.self_attn.k_proj.weight") x.shape = {64, 32};
  }
  TempDir dir;
  EXPECT_THAT(Msg(LoadVariant(dir, e).status()),
              HasSubstr("tensor 'model.layers.1.self_attn.k_proj.weight': shape [64, 32], "
                        "expected [32, 64] from config.json"));
}

TEST(HfFolder, RejectsMissingAndUnknownTensors) {
  std::vector<F32Entry> e = FixtureEntries();
  ASSERT_FALSE(e.empty());
  std::erase_if(e, [](const F32Entry& x) { return x.name == "lm_head.weight"; });
  TempDir dir;
  EXPECT_THAT(Msg(LoadVariant(dir, e).status()), HasSubstr("tensor 'lm_head.weight' is missing"));
  e = FixtureEntries();
  e.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {8}, std::vector<float>(8)});
  TempDir dir2;
  EXPECT_TRUE(LoadVariant(dir2, e).ok()) << "inv_freq buffers are skipped";
  e.push_back({"model.layers.0.mlp.experts.weight", {1}, {0.0f}});
  TempDir dir3;
  EXPECT_THAT(Msg(LoadVariant(dir3, e).status()), HasSubstr("is not a Llama-family tensor"));
}

TEST(HfFolder, TiedConfigDropsStoredLmHead) {
  json config;
  std::ifstream(TinyDir() / "config.json") >> config;
  config["tie_word_embeddings"] = true;
  TempDir dir;
  auto w = LoadVariant(dir, FixtureEntries(), config.dump());
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->config.tie_embeddings);
  EXPECT_FALSE(w->tensors.contains("lm_head.weight"));
}

TEST(HfFolder, RejectsFolderWithoutWeightsOrTokenizer) {
  TempDir dir;
  fs::copy_file(TinyDir() / "config.json", dir.path() / "config.json");
  EXPECT_EQ(LoadWeights(dir.path().string()).status().code(), absl::StatusCode::kNotFound);
  fs::copy_file(TinyDir() / "model.safetensors", dir.path() / "model.safetensors");
  EXPECT_THAT(Msg(LoadWeights(dir.path().string()).status()), HasSubstr("tokenizer.json"));
}

// ---- config.json ----------------------------------------------------------

json BaseConfig() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64},
          {"intermediate_size", 96}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"vocab_size", 320}, {"max_position_embeddings", 256}};
}

TEST(HfConfig, ReadsTransformers4RopeScalingAndDefaults) {
  json j = BaseConfig();
  j["rope_theta"] = 500000.0;
  j["head_dim"] = nullptr;  // derive hidden / heads
  j["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  auto c = ParseHfConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_scaling.type, "llama3");
  EXPECT_EQ(c->rope_scaling.factor, 8.0f);
  EXPECT_EQ(c->rope_scaling.original_max_position, 8192);
  EXPECT_EQ(c->rms_eps, 1e-5f);  // default
  EXPECT_FALSE(c->tie_embeddings);
}

TEST(HfConfig, Qwen2AndAttentionBiasImplyQkvBias) {
  json j = BaseConfig();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["tie_word_embeddings"] = true;
  auto c = ParseHfConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "qwen2");
  EXPECT_TRUE(c->qkv_bias);
  EXPECT_TRUE(c->tie_embeddings);
  j = BaseConfig();
  j["attention_bias"] = true;
  EXPECT_TRUE(ParseHfConfig(j.dump())->qkv_bias);
  j = BaseConfig();
  j.erase("architectures");
  j["model_type"] = "mistral";
  EXPECT_EQ(ParseHfConfig(j.dump())->architecture, "mistral");
}

TEST(HfConfig, RejectsMissingOrBadFields) {
  json j = BaseConfig();
  j.erase("hidden_size");
  EXPECT_THAT(Msg(ParseHfConfig(j.dump()).status()), HasSubstr("\"hidden_size\": missing"));
  j = BaseConfig();
  j["num_hidden_layers"] = "2";
  EXPECT_THAT(Msg(ParseHfConfig(j.dump()).status()),
              HasSubstr("\"num_hidden_layers\": is a string, expected an integer"));
  j = BaseConfig();
  j["num_key_value_heads"] = 3;
  EXPECT_THAT(Msg(ParseHfConfig(j.dump()).status()), HasSubstr("3 does not divide"));
  j = BaseConfig();
  j["vocab_size"] = -5;
  EXPECT_THAT(Msg(ParseHfConfig(j.dump()).status()), HasSubstr("-5 out of range"));
  EXPECT_FALSE(ParseHfConfig("{not json").ok());
}

TEST(HfConfig, UnsupportedFeaturesAreFailedPrecondition) {
  json j = BaseConfig();
  j["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_EQ(ParseHfConfig(j.dump()).status().code(), absl::StatusCode::kFailedPrecondition);
  j = BaseConfig();
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_THAT(Msg(ParseHfConfig(j.dump()).status()), HasSubstr("rope type 'yarn'"));
  j = BaseConfig();
  j["hidden_act"] = "gelu";
  EXPECT_EQ(ParseHfConfig(j.dump()).status().code(), absl::StatusCode::kFailedPrecondition);
  j = BaseConfig();
  j["mlp_bias"] = true;
  EXPECT_EQ(ParseHfConfig(j.dump()).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kvstream::loader
