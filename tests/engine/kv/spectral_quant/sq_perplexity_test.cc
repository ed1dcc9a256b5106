// SpectralQuant's perplexity gate on the bundled SmolLM2-135M (spectral_quant.md
// §9 test 8): the engine teacher-forces the next kForced tokens of a real
// English document (Northanger Abbey, data/corpus, from its Chapter 7; not the
// calibration corpus) after a kPrompt-token prompt of the same document, and
// reports the raw-model logprob of each forced token. Perplexity ratio
// = exp(mean NLL under spectral_quant - mean NLL under dense):
//  - defaults: <= 1.05. The spec's initial gate was 1.10 "to revisit with
//    data"; the data on this model (head dim 64, 3 KV heads): 1.99 with the
//    seed's 2048-token calibration texts, 1.46-1.59 with packed calibration
//    sequences (sq_calibrate.h), the attention-sink token carrying 30-60% key
//    error. Issue 11's kvstream choices (sq_config.h, sq_plan.h) measured
//    here, all at 3 bits: 1.593 at 4.58x (spec) -> 1.310 at 4.58x (legacy
//    b_low per layer, SqLayerBitsDeff) -> 1.171 at 4.53x (+ 1 exact sink)
//    -> 1.147 at 4.52x (+ centred values; the defaults). Centred keys hurt
//    (1.18 -> 1.22 with sinks). 1.021 at total_bits 5 + noise_bits 8; 1.054
//    at noise_bits 8 (tail error matters); 1.107 at total_bits 4 (3.5x).
//    Then (issue 11, sq_config.h): rd_allocation (one rate-distortion fill
//    of all D dims, K 6 + V 7 words at D = 64, was K 6 + V 8) and a recent
//    window of 32 exact bf16 tokens: 1.031 at 4.16x here (the window and
//    the fp32 sink weigh on 736 tokens: 4.62x at 2048, 4.84x at 8000). Gate:
//    issue 11's 1.05. A Python mirror on 2048 tokens of the same chapter
//    (all tokens coded, 1 sink): spec 1.22 (1024 tokens), rd 1.10, rd +
//    window 1.041; "8-bit" noise mode is ~5-6 bits on the semantic dims;
//    all 64 dims at 8 bits give 0.998, so no numerics bug is left;
//  - noise_bits=1 and noise_bits=2 + value_noise_bits=1: reported, not gated.
// The prompt takes two prefill chunks (512 + the rest), so the second chunk
// attends over the compressed first one, and every forced token is decoded
// over compressed records (mode a, compress_decode_tokens=true). The profile
// is the engine's own (loaded beside the model / from the user cache, or
// calibrated at start on data/calibration/corpus.txt).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/engine/engine_fixture.h"

namespace kvstream {
namespace {

constexpr size_t kPrompt = 640, kForced = 96;

// The document's paragraphs from its CHAPTER 7 heading on, each paragraph's
// lines re-joined with spaces, paragraphs separated by blank lines.
std::string Document() {
  std::ifstream in(testing::SourceDir() + "/data/corpus/northanger_abbey.txt");
  std::string line, text, para;
  bool started = false;
  while (std::getline(in, line) && text.size() < 12000) {
    if (!started) {
      started = line == "CHAPTER 7";
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      if (!para.empty()) text += (text.empty() ? "" : "\n\n") + para;
      para.clear();
      continue;
    }
    para += (para.empty() ? "" : " ") + line;
  }
  return text;
}

struct Nll {
  double mean = 0.0;
  double ppl() const { return std::exp(mean); }
  CacheReport cache;
};

// Mean NLL of the forced tokens under `strategy` with `knobs`.
Nll TeacherForcedNll(Engine* e, const std::vector<int32_t>& prompt, const std::vector<int32_t>& forced,
                     const std::string& strategy, std::map<std::string, KnobValue> knobs) {
  GenerateSpec spec = testing::GreedySpec(prompt, static_cast<int32_t>(forced.size()));
  spec.teacher_forced = forced;
  spec.kv.strategy = strategy;
  spec.kv.knobs = std::move(knobs);
  Nll r;
  auto out = e->GenerateBatch({spec});
  EXPECT_TRUE(out.ok()) << strategy << ": " << out.status();
  if (!out.ok()) return r;
  const GenerateOutcome& o = (*out)[0];
  EXPECT_EQ(o.token_ids, forced) << strategy;
  EXPECT_EQ(o.logprobs.size(), forced.size()) << strategy;
  for (float lp : o.logprobs) {
    EXPECT_TRUE(std::isfinite(lp) && lp <= 0.0f) << strategy << ": logprob " << lp;
    r.mean -= static_cast<double>(lp) / static_cast<double>(o.logprobs.size());
  }
  r.cache = o.cache;
  return r;
}

struct Doc {
  std::vector<int32_t> prompt, forced;
};

const Doc& SharedDoc(Engine* e) {
  static const Doc d = [&] {
    Doc d;
    const std::vector<int32_t> ids = e->tokenizer().Encode(Document(), true);
    EXPECT_GE(ids.size(), kPrompt + kForced) << "the Chapter 7 text is shorter than the run";
    if (ids.size() < kPrompt + kForced) return d;
    d.prompt.assign(ids.begin(), ids.begin() + kPrompt);
    d.forced.assign(ids.begin() + kPrompt, ids.begin() + kPrompt + kForced);
    return d;
  }();
  return d;
}

// Dense's NLL on the shared document (computed once per binary).
const Nll& DenseNll(Engine* e) {
  static const Nll n = TeacherForcedNll(e, SharedDoc(e).prompt, SharedDoc(e).forced, "dense", {});
  return n;
}

double Report(Engine* e, const std::string& label, std::map<std::string, KnobValue> knobs,
              double* compression = nullptr) {
  const Doc& d = SharedDoc(e);
  const Nll& dense = DenseNll(e);
  const Nll sq = TeacherForcedNll(e, d.prompt, d.forced, "spectral_quant", std::move(knobs));
  EXPECT_EQ(sq.cache.strategy, "spectral_quant") << label;
  const double ratio = std::exp(sq.mean - dense.mean);
  std::printf("[sq-ppl] %s: %zu prompt + %zu forced tokens: NLL dense %.4f (ppl %.3f), spectral_quant %.4f "
              "(ppl %.3f), ppl ratio %.4f; compression %.2fx (kv_bytes %lld)\n",
              label.c_str(), d.prompt.size(), d.forced.size(), dense.mean, dense.ppl(), sq.mean, sq.ppl(), ratio,
              sq.cache.compression_ratio, static_cast<long long>(sq.cache.kv_bytes_device));
  if (compression != nullptr) *compression = sq.cache.compression_ratio;
  return ratio;
}

TEST(SqPerplexity, TeacherForcedRatioVsDenseAtDefaultsStaysAtTodaysLevel) {
  KV_REQUIRE_MODEL(engine);
  ASSERT_EQ(SharedDoc(engine).forced.size(), kForced);
  double compression = 0.0;
  const double ratio = Report(engine, "defaults", {}, &compression);
  RecordProperty("ppl_ratio_defaults", std::to_string(ratio));
  EXPECT_LE(ratio, 1.05) << "issue 11's goal (see the top of this file)";
  EXPECT_GE(compression, 4.1) << "the defaults' compression at 736 tokens (CPU, fp32 sink, 32-token bf16 window)";
  EXPECT_GE(ratio, 0.9) << "compression should not make the text far likelier than dense does";
}

TEST(SqPerplexity, NoiseModesAreReportedNotGated) {
  KV_REQUIRE_MODEL(engine);
  ASSERT_EQ(SharedDoc(engine).forced.size(), kForced);
  const double r1 = Report(engine, "noise_bits=1", {{"noise_bits", int64_t{1}}});
  const double r2 = Report(engine, "noise_bits=2,value_noise_bits=1",
                           {{"noise_bits", int64_t{2}}, {"value_noise_bits", int64_t{1}}});
  RecordProperty("ppl_ratio_noise1", std::to_string(r1));
  RecordProperty("ppl_ratio_noise2_value1", std::to_string(r2));
  EXPECT_TRUE(std::isfinite(r1) && std::isfinite(r2));
}

// Measuring aid: KVSTREAM_SQ_PPL_KNOBS="name=value,..." (integers, or
// true/false) reports one more configuration; skipped when unset.
TEST(SqPerplexity, KnobsFromEnvironment) {
  const char* env = std::getenv("KVSTREAM_SQ_PPL_KNOBS");
  if (env == nullptr || *env == '\0') GTEST_SKIP() << "KVSTREAM_SQ_PPL_KNOBS unset";
  KV_REQUIRE_MODEL(engine);
  std::map<std::string, KnobValue> knobs;
  std::stringstream ss(env);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    ASSERT_NE(eq, std::string::npos) << item;
    const std::string name = item.substr(0, eq), value = item.substr(eq + 1);
    if (value == "true" || value == "false") {
      knobs[name] = value == "true";
    } else if (value.find('.') != std::string::npos) {
      knobs[name] = std::stod(value);
    } else {
      knobs[name] = static_cast<int64_t>(std::stoll(value));
    }
  }
  Report(engine, env, knobs);
}

}  // namespace
}  // namespace kvstream
