#include "engine/model/synthetic.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kvstream {
namespace {

ModelConfig Shape(const char* name, int64_t layers, int64_t hidden, int64_t inter, int64_t heads, int64_t kv,
                  int64_t vocab, int64_t ctx, float theta, bool tied, bool bias) {
  ModelConfig c;
  c.name = absl::StrCat("synthetic ", name);
  c.architecture = bias ? "qwen2" : "llama";
  c.n_layers = layers;
  c.hidden = hidden;
  c.intermediate = inter;
  c.n_heads = heads;
  c.n_kv_heads = kv;
  c.head_dim = hidden / heads;
  c.vocab_size = vocab;
  c.context_length = ctx;
  c.rope_theta = theta;
  c.tie_embeddings = tied;
  c.qkv_bias = bias;
  c.rms_eps = 1e-5f;
  return c;
}

}  // namespace

std::vector<std::string> SyntheticNames() { return {"llama3-8b", "llama3-70b", "qwen2.5-7b", "smollm2-135m"}; }

absl::StatusOr<ModelConfig> SyntheticConfig(const std::string& name) {
  // Published configs (config.json of each model).
  if (name == "llama3-8b" || name == "llama3-70b") {
    ModelConfig c = name == "llama3-8b" ? Shape("llama3-8b", 32, 4096, 14336, 32, 8, 128256, 131072, 500000.f, false, false)
                                        : Shape("llama3-70b", 80, 8192, 28672, 64, 8, 128256, 131072, 500000.f, false, false);
    c.rope_scaling = RopeScaling{"llama3", 8.0f, 1.0f, 4.0f, 8192};
    return c;
  }
  if (name == "qwen2.5-7b") return Shape("qwen2.5-7b", 28, 3584, 18944, 28, 4, 152064, 32768, 1e6f, false, true);
  if (name == "smollm2-135m") return Shape("smollm2-135m", 30, 576, 1536, 9, 3, 49152, 8192, 100000.f, true, false);
  return absl::InvalidArgumentError(absl::StrCat("--synthetic must be one of ", absl::StrJoin(SyntheticNames(), ", "),
                                                 " (got '", name, "')"));
}

TokenizerData SyntheticTokenizer(int64_t vocab_size) {
  // GPT-2's byte-to-unicode map: printable Latin-1 bytes stand for
  // themselves, the rest are shifted to U+0100 + n.
  TokenizerData t;
  t.pre = "gpt2";
  t.tokens.resize(vocab_size);
  t.token_types.assign(vocab_size, TokenType::kNormal);
  int shifted = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = printable ? b : 256 + shifted++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    t.tokens[b] = s;
  }
  for (int64_t i = 256; i < vocab_size; ++i) {
    t.tokens[i] = absl::StrCat("<|synthetic_", i, "|>");
    t.token_types[i] = TokenType::kControl;
  }
  t.eos_id = static_cast<int32_t>(vocab_size - 1);
  return t;
}

}  // namespace kvstream
