// Issue #12 diagnostic (runs only with KVSTREAM_LASER_DIAG=1; slow, CPU fp32):
// passkey prompts laid out as `kvstream eval` lays them out (chatml intro,
// corpus filler cut to the context, the key sentence snapped to a sentence
// end at the depth, the question at the end, query_len = the question), run
// through LASER-KV; prints per case whether the key's digits are held, the
// share of the context kept, and the answer (and dense's, with
// KVSTREAM_LASER_DIAG_DENSE=1). Knobs: KVSTREAM_LASER_DIAG_CONTEXTS
// ("2048,4096"), _DEPTHS ("0,25,50,75,100"), _SAMPLES (2), _RATIO (0.25),
// _BLOCK (1024), _DEVICE (cpu; cuda for the GPU engine in bf16); _EVAL=1:
// the prompts `kvstream eval` sends instead (its case builder, data/corpus,
// _SEED 7), the key located by its digits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "client/corpus.h"
#include "client/eval_plan.h"
#include "client/eval_prompts.h"
#include "client/server_calls.h"
#include "engine/kv/laser_kv/laser_kv_strategy.h"
#include "tests/engine/engine_fixture.h"
#include "tests/engine/runtime/direct_runner.h"

namespace kvstream {
namespace {

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

std::vector<int> IntList(const std::string& s) {
  std::vector<int> out;
  for (absl::string_view p : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    int v = 0;
    if (absl::SimpleAtoi(p, &v)) out.push_back(v);
  }
  return out;
}

struct DiagPrompt {
  std::vector<int32_t> ids;
  int64_t key_at[2] = {0, 0};  // first digit of each key occurrence
  int64_t key_len = 0;
  int64_t question = 0;
};

// The eval's BuildPasskey + Assemble (client/eval_prompts.cc) on the engine's tokenizer.
DiagPrompt Build(const Tokenizer& tok, const std::string& text, std::mt19937_64& rng, int context, int depth,
                 const std::string& key) {
  auto enc = [&](const std::string& s) { return tok.Encode(s, false); };
  const std::vector<int32_t> prefix = enc(
      "<|im_start|>user\nThere is a pass key hidden inside a lot of irrelevant text. Find it and memorize it. "
      "I will quiz you about the pass key.\n\n");
  const std::vector<int32_t> lead = enc("\nThe pass key is ");
  const std::vector<int32_t> mid = enc(key + ". Remember it. ");
  const std::vector<int32_t> k = enc(key);
  const std::vector<int32_t> needle = enc("\nThe pass key is " + key + ". Remember it. " + key + " is the pass key.\n");
  const std::vector<int32_t> suffix = enc("\n\nWhat is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is");
  const size_t room = static_cast<size_t>(context) - prefix.size() - needle.size() - suffix.size();
  size_t start = std::uniform_int_distribution<size_t>(0, text.size() - room * 6)(rng);
  start = text.rfind("\n\n", start);
  start = start == std::string::npos ? 0 : start + 2;
  std::vector<int32_t> filler = enc(text.substr(start, room * 6));
  filler.resize(room);
  size_t at = std::min(room, static_cast<size_t>(static_cast<double>(room) * depth / 100.0 + 0.5));
  for (size_t back = 0; back <= 64 && back <= at; ++back) {
    const size_t i = at - back;
    if (i == 0) {
      at = 0;
      break;
    }
    std::string piece = tok.Decode({filler[i - 1]});
    while (!piece.empty() && (piece.back() == '"' || piece.back() == '\'' || piece.back() == ' ')) piece.pop_back();
    if (!piece.empty() && (piece.back() == '.' || piece.back() == '!' || piece.back() == '?' || piece.back() == '\n')) {
      at = i;
      break;
    }
  }
  DiagPrompt p;
  p.ids = prefix;
  p.ids.insert(p.ids.end(), filler.begin(), filler.begin() + static_cast<std::ptrdiff_t>(at));
  const int64_t needle_at = static_cast<int64_t>(p.ids.size());
  p.ids.insert(p.ids.end(), needle.begin(), needle.end());
  p.ids.insert(p.ids.end(), filler.begin() + static_cast<std::ptrdiff_t>(at), filler.end());
  p.ids.insert(p.ids.end(), suffix.begin(), suffix.end());
  p.question = static_cast<int64_t>(suffix.size());
  // Key occurrences: the first k.size() ids after the lead, and after lead + mid.
  p.key_len = static_cast<int64_t>(k.size());
  p.key_at[0] = needle_at + static_cast<int64_t>(lead.size());
  p.key_at[1] = p.key_at[0] + static_cast<int64_t>(mid.size());
  return p;
}

// The client's tokenizer interface over the engine's tokenizer (the eval asks the server's).
class EngineTextTokenizer final : public client::TextTokenizer {
 public:
  explicit EngineTextTokenizer(const Tokenizer& t) : t_(t) {}
  absl::StatusOr<client::Tokens> Tokenize(const std::string& text) override {
    client::Tokens out;
    out.ids = t_.Encode(text, false);
    for (int32_t id : out.ids) out.pieces.push_back(t_.Decode({id}));
    return out;
  }

 private:
  const Tokenizer& t_;
};

// key_at / key_len of an eval prompt: the tokens covering the first two
// occurrences of the key's digits in the decoded prompt.
void LocateKey(const Tokenizer& tok, const std::string& key, DiagPrompt& pk) {
  std::string text;
  std::vector<size_t> begin;
  for (int32_t id : pk.ids) {
    begin.push_back(text.size());
    text += tok.Decode({id});
  }
  auto token_at = [&](size_t ch) {
    return static_cast<int64_t>(std::upper_bound(begin.begin(), begin.end(), ch) - begin.begin()) - 1;
  };
  size_t at = 0;
  for (int occ = 0; occ < 2; ++occ) {
    at = text.find(key, at);
    if (at == std::string::npos) return;
    pk.key_at[occ] = token_at(at);
    pk.key_len = token_at(at + key.size() - 1) - pk.key_at[occ] + 1;
    at += key.size();
  }
}

bool Correct(const std::string& text, const std::string& key) {
  std::string c;
  for (char ch : text) {
    if (ch != ' ') c += ch;
  }
  const size_t b = c.find_first_of("0123456789");
  if (b == std::string::npos) return false;
  size_t e = b;
  while (e < c.size() && c[e] >= '0' && c[e] <= '9') ++e;
  return c.substr(b, e - b) == key;
}

TEST(LaserKvPasskeyDiag, PrintsKeyRetentionPerDepth) {
  if (Env("KVSTREAM_LASER_DIAG", "") != "1") GTEST_SKIP() << "set KVSTREAM_LASER_DIAG=1";
  // KVSTREAM_LASER_DIAG_DEVICE=cuda: the engine as the server runs it on a GPU (bf16), not CPU fp32.
  std::unique_ptr<Engine> own;
  Engine* engine = nullptr;
  if (Env("KVSTREAM_LASER_DIAG_DEVICE", "cpu") == "cpu") {
    engine = testing::SharedEngine();
  } else {
    own = testing::LoadBundledEngine(Env("KVSTREAM_LASER_DIAG_DEVICE", "cpu"));
    engine = own.get();
  }
  if (engine == nullptr) GTEST_SKIP() << "bundled model absent (or the device did not load)";
  std::ifstream f(testing::SourceDir() + "/data/corpus/pride_and_prejudice.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const std::vector<int> contexts = IntList(Env("KVSTREAM_LASER_DIAG_CONTEXTS", "2048,4096"));
  const std::vector<int> depths = IntList(Env("KVSTREAM_LASER_DIAG_DEPTHS", "0,25,50,75,100"));
  const int samples = std::atoi(Env("KVSTREAM_LASER_DIAG_SAMPLES", "2").c_str());
  const double ratio = std::atof(Env("KVSTREAM_LASER_DIAG_RATIO", "0.25").c_str());
  const int64_t block = std::atoll(Env("KVSTREAM_LASER_DIAG_BLOCK", "1024").c_str());
  const bool with_dense = Env("KVSTREAM_LASER_DIAG_DENSE", "") == "1";
  const double hybrid = std::atof(Env("KVSTREAM_LASER_DIAG_HYBRID", "0.75").c_str());
  int held_all = 0, right = 0, dense_right = 0, cases = 0;
  // One case through dense (optional) and LASER-KV: whether the key's digits are held, and the answers.
  auto run_case = [&](int ctx, int depth, int s, const DiagPrompt& pk, const std::string& key) {
    if (const char* show = std::getenv("KVSTREAM_LASER_DIAG_SHOW")) {
      for (int at : IntList(show)) {
        const std::string piece = engine->tokenizer().Decode({pk.ids[static_cast<size_t>(at)]});
        std::printf("SHOW %d '%s'\n", at, piece.c_str());
      }
    }
    GenerateSpec spec = testing::GreedySpec(pk.ids, 10);
    spec.sampling.ignore_eos = false;
    std::string dense_text = "-";
    if (with_dense) {
      auto d = engine->GenerateBatch({spec});
      ASSERT_TRUE(d.ok()) << d.status();
      dense_text = engine->tokenizer().Decode((*d)[0].token_ids);
      dense_right += Correct(dense_text, key) ? 1 : 0;
    }
    spec.kv.strategy = "laser_kv";
    spec.kv.knobs = {{"compression_ratio", ratio}, {"block_size", block}, {"query_len", pk.question},
                     {"hybrid_ratio", hybrid}};
    LaserKvStrategy strategy(engine->model().geometry());
    std::vector<int32_t> held;
    int64_t kept = 0;
    auto out = testing::RunDirect(*engine, strategy, {spec}, [&](size_t, const SequenceCache& c) {
      const auto& lc = static_cast<const LaserKvSequenceCache&>(c);
      held = lc.held_positions();
      kept = lc.kept_after_prefill();
    });
    ASSERT_TRUE(out.ok()) << out.status();
    const GenerateOutcome& o = (*out)[0];
    std::string mask;
    int got = 0;
    for (int occ = 0; occ < 2; ++occ) {
      for (int64_t j = pk.key_at[occ]; j < pk.key_at[occ] + pk.key_len; ++j) {
        const bool h = std::binary_search(held.begin(), held.end(), static_cast<int32_t>(j));
        mask += h ? '#' : '.';
        got += h ? 1 : 0;
      }
      mask += ' ';
    }
    const std::string laser_text = engine->tokenizer().Decode(o.token_ids);
    const bool ok = Correct(laser_text, key);
    const int64_t S = static_cast<int64_t>(pk.ids.size()) - pk.question;
    const double tf = static_cast<double>(o.cache.tokens_held) / static_cast<double>(o.cache.tokens_seen);
    std::printf("ctx %5d depth %3d s%d key@%5lld blk %lld off %4lld  held %s kept %.3f held%% %.3f  %s laser '%s'  dense '%s'\n",
                ctx, depth, s, static_cast<long long>(pk.key_at[0]), static_cast<long long>(pk.key_at[0] / block),
                static_cast<long long>(pk.key_at[0] % block), mask.c_str(),
                static_cast<double>(kept) / static_cast<double>(S), tf, ok ? "OK " : "BAD", laser_text.c_str(),
                dense_text.c_str());
    std::fflush(stdout);
    held_all += got == 2 * pk.key_len ? 1 : 0;
    right += ok ? 1 : 0;
    ++cases;
  };
  if (Env("KVSTREAM_LASER_DIAG_EVAL", "") == "1") {
    // The eval's own cases (client/eval_plan.cc BuildEvalCases, data/corpus,
    // --seed 7 as deploy/gpu/run.sh passes it): the prompts `kvstream eval` sends.
    auto corpus = client::Corpus::Load(testing::SourceDir() + "/data/corpus");
    ASSERT_TRUE(corpus.ok()) << corpus.status();
    EngineTextTokenizer tok(engine->tokenizer());
    client::EvalSettings settings;
    settings.tasks = {client::EvalTask::kPasskey};
    settings.contexts = contexts;
    settings.depths = depths;
    settings.samples = samples;
    settings.seed = std::strtoull(Env("KVSTREAM_LASER_DIAG_SEED", "7").c_str(), nullptr, 10);
    auto built = client::BuildEvalCases(settings, *corpus, tok, client::ChatMlFormat(), [] {});
    ASSERT_TRUE(built.ok()) << built.status();
    for (const client::EvalCase& c : *built) {
      const auto& ids = c.request.prompt_token_ids().ids();
      DiagPrompt pk;
      pk.ids.assign(ids.begin(), ids.end());
      pk.question = c.question_tokens;
      LocateKey(engine->tokenizer(), c.answer, pk);
      run_case(c.context, c.depth, c.sample, pk, c.answer);
    }
  } else {
    for (int ctx : contexts) {
      for (int depth : depths) {
        for (int s = 0; s < samples; ++s) {
          std::mt19937_64 rng(1000003ull * static_cast<uint64_t>(ctx) + 101ull * static_cast<uint64_t>(depth) +
                              static_cast<uint64_t>(s));
          const std::string key = std::to_string(std::uniform_int_distribution<int>(10000, 99999)(rng));
          run_case(ctx, depth, s, Build(engine->tokenizer(), text, rng, ctx, depth, key), key);
        }
      }
    }
  }
  std::printf("cases %d  key fully held %d  laser right %d  dense right %d\n", cases, held_all, right, dense_right);
}

}  // namespace
}  // namespace kvstream
