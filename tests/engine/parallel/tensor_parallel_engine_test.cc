// The engine with --tensor-parallel (EngineOptions::tensor_parallel) on the
// bundled real model: TP=3 and TP=2 (SmolLM2-135M has 3 KV heads, split
// 2 + 1 at TP=2; ranks are threads) generate the same greedy tokens as TP=1,
// 24 tokens, batched, on three short prompts and one of ~400 tokens (past
// every strategy's exact windows), for dense, EntmaxKV (page lists per KV
// head), and AKV on the short prompts; SpectralQuant (the whole model's
// plan sliced to each rank's heads) the same or parting at near ties;
// SAM-Gate, LASER-KV and AKV (past its hot budget) decide on each rank's own
// heads and serve every prompt to the end; the cache report sums the ranks
// (dense: the same bytes as TP=1). Sizes outside [1, KV heads] are
// INVALID_ARGUMENT.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "engine/runtime/engine.h"
#include "tests/engine/engine_fixture.h"
#include "tests/test_paths.h"

namespace kvstream {
namespace {

std::unique_ptr<Engine> Load(int tp) {
  // Both sides multiply fp32 weights: the CPU's packed Q4_1 decode path is
  // not carried into shards.
  setenv("KVSTREAM_PACKED_WEIGHTS", "0", 1);
  return testing::LoadBundledEngine("cpu", tp);
}

struct Pair {
  std::unique_ptr<Engine> one, tp, tp2;
  bool loaded() const { return one && tp && tp2; }
  Engine& at_size(int size) { return size == 3 ? *tp : *tp2; }  // the TP=3 or TP=2 engine
};
Pair& Engines() {
  static Pair p = [] {
    Pair q;
    if (std::filesystem::exists(testing::DefaultModelPath())) {
      q.one = Load(1);
      q.tp = Load(3);
      q.tp2 = Load(2);
    }
    return q;
  }();
  return p;
}

// with_long: also the ~400-token prompt.
std::vector<GenerateSpec> Specs(Engine& e, const StrategyConfig& kv, bool with_long = true) {
  std::vector<GenerateSpec> specs;
  std::string long_text;  // ~400 tokens: past every strategy's exact windows, so they compress
  for (int i = 0; i < 16; ++i) {
    long_text += "The lighthouse keeper counted the ships that passed the rocks each night and wrote their names "
                 "in a ledger. ";
  }
  long_text += "The keeper's ledger says the last ship was";
  for (const std::string& text : {std::string("The capital of France is"), std::string("def fibonacci(n):"),
                                  std::string("Once upon a time, in a village by the sea, there lived"), long_text}) {
    if (!with_long && text == long_text) break;
    GenerateSpec s = testing::GreedySpec(e.tokenizer().Encode(text, true), 24);
    s.kv = kv;
    specs.push_back(s);
  }
  return specs;
}

// `strategy` with the knob list `knobs` ("name=value,...").
StrategyConfig Kv(const std::string& strategy, const std::string& knobs) {
  StrategyConfig kv;
  kv.strategy = strategy;
  if (!knobs.empty()) {
    auto k = ParseKnobList(knobs);
    EXPECT_TRUE(k.ok()) << k.status();
    if (k.ok()) kv.knobs = *k;
  }
  return kv;
}

void ExpectSameTokens(const std::string& strategy, const std::string& knobs, bool with_long = true) {
  Pair& p = Engines();
  if (!p.loaded()) GTEST_SKIP() << "bundled model absent: run scripts/setup.sh";
  const StrategyConfig kv = Kv(strategy, knobs);
  auto a = p.one->GenerateBatch(Specs(*p.one, kv, with_long));
  ASSERT_TRUE(a.ok()) << a.status();
  for (int size : {3, 2}) {
    Engine& tp = p.at_size(size);
    auto b = tp.GenerateBatch(Specs(tp, kv, with_long));
    ASSERT_TRUE(b.ok()) << b.status();
    for (size_t i = 0; i < a->size(); ++i) {
      EXPECT_EQ((*a)[i].token_ids, (*b)[i].token_ids) << strategy << " TP=" << size << " prompt " << i;
      EXPECT_EQ((*b)[i].cache.stats.at("tensor_parallel_ranks"), size);
      if (strategy == "dense") {
        EXPECT_EQ((*a)[i].cache.kv_bytes_device, (*b)[i].cache.kv_bytes_device) << "prompt " << i;
      }
    }
    std::printf("[tp-engine] %s: TP=%d greedy tokens equal TP=1 on %zu prompts x 24 tokens\n", strategy.c_str(),
                size, a->size());
  }
}

TEST(TensorParallelEngine, DenseFollowsTp1) { ExpectSameTokens("dense", ""); }
TEST(TensorParallelEngine, EntmaxKvFollowsTp1) { ExpectSameTokens("entmax_kv", "token_budget=16,dense_layers=0"); }
// Each rank codes its KV heads with the whole model's plan sliced to them,
// so a rank's codes are one GPU's for those heads; the ranks' fp32 partial
// sums move K by rounding, which can move a code across a level: checked by
// teacher forcing (TP=1 on the TP run's tokens: top-1 equal, or parting at
// near ties only).
TEST(TensorParallelEngine, SpectralQuantFollowsTp1OrPartsAtNearTies) {
  Pair& p = Engines();
  if (!p.loaded()) GTEST_SKIP() << "bundled model absent: run scripts/setup.sh";
  const StrategyConfig kv = Kv("spectral_quant", "num_recent_tokens=8");
  for (int size : {3, 2}) {
    Engine& tp = p.at_size(size);
    const std::vector<GenerateSpec> specs = Specs(tp, kv);
    auto b = tp.GenerateBatch(specs);
    ASSERT_TRUE(b.ok()) << b.status();
    for (size_t i = 0; i < specs.size(); ++i) {
      EXPECT_EQ((*b)[i].cache.stats.at("tensor_parallel_ranks"), size);
      testing::ExpectAloneAgreesOrNearTie(*p.one, specs[i], (*b)[i].token_ids,
                                          "spectral_quant TP=" + std::to_string(size) + " prompt " + std::to_string(i));
    }
  }
}

// SAM-Gate gates a layer, LASER-KV scores tokens and AKV tiers them on the
// heads they hold, so under tensor parallelism each rank decides on its own
// heads (not TP=1's all-head statistics): they serve every prompt to the end, the
// report sums the ranks, and a second request on the group still works (a
// failing rank would abort the group).
void ExpectServesPerShard(const std::string& strategy, const std::string& knobs = "") {
  Pair& p = Engines();
  if (!p.loaded()) GTEST_SKIP() << "bundled model absent: run scripts/setup.sh";
  const StrategyConfig kv = Kv(strategy, knobs);
  for (int size : {3, 2}) {
    Engine& tp = p.at_size(size);
    for (int round = 0; round < 2; ++round) {
      auto b = tp.GenerateBatch(Specs(tp, kv));
      ASSERT_TRUE(b.ok()) << strategy << " TP=" << size << ": " << b.status();
      for (const auto& r : *b) {
        EXPECT_EQ(r.token_ids.size(), 24u) << strategy;
        EXPECT_EQ(r.cache.stats.at("tensor_parallel_ranks"), size);
        EXPECT_GT(r.cache.kv_bytes_device + r.cache.kv_bytes_host, 0) << strategy;
      }
    }
  }
}
TEST(TensorParallelEngine, SamGateServesPerShard) { ExpectServesPerShard("sam_gate"); }
TEST(TensorParallelEngine, LaserKvServesPerShard) { ExpectServesPerShard("laser_kv"); }
// AKV scores and tiers a layer's tokens by the mean over its query heads
// (akv.md "Granularity"), so on the long prompt each rank tiers by its own
// heads' mean: the same tokens as TP=1 while that choice does not bind (the
// short prompts), its own tiers after.
constexpr char kAkvKnobs[] = "hot_budget=16,n_anchors=4,eviction_batch_size=4,recent_tokens_protected=8,group_size=32";
TEST(TensorParallelEngine, AkvFollowsTp1OnShortPrompts) { ExpectSameTokens("akv", kAkvKnobs, /*with_long=*/false); }
TEST(TensorParallelEngine, AkvServesPerShard) { ExpectServesPerShard("akv", kAkvKnobs); }

TEST(TensorParallelEngine, SizesOutsideOneToTheKvHeadsAreRefused) {
  if (!std::filesystem::exists(testing::DefaultModelPath())) GTEST_SKIP() << "bundled model absent";
  for (int bad : {0, 4}) {
    EngineOptions o;
    o.model_path = testing::DefaultModelPath();
    o.device = "cpu";
    o.tensor_parallel = bad;
    auto e = Engine::Load(o);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << e.status();
  }
}

}  // namespace
}  // namespace kvstream
