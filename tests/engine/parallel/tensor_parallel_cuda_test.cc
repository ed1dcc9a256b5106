// Tensor parallelism on GPUs through NCCL (issue 14) with the bundled real
// model: TP = min(GPUs, KV heads) (2 on a two-GPU machine: SmolLM2-135M's 3
// KV heads split 2 + 1), one GPU per rank, bf16, against TP=1 on one GPU.
// The all-reduce sums bf16 partials where TP=1 sums inside one GEMV, so
// greedy tokens may part at a near tie: on every parity prompt, 24 tokens,
// for dense, EntmaxKV and AKV, the TP run equals the TP=1 run or parts where
// TP=1's own top logprobs put the TP choice within 0.5 nats of its own
// (same context up to there), and TP=1 teacher-forced on the TP run's
// tokens agrees past that point too, or parts at near ties only; decode
// steps replay CUDA graphs at TP > 1.
// Skips where the machine has fewer than 2 GPUs or the build no NCCL.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

#include "engine/parallel/nccl_group.h"
#include "engine/runtime/engine.h"
#include "tests/engine/engine_fixture.h"
#include "tests/test_paths.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace kvstream {
namespace {

int Gpus() {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  return static_cast<int>(c10::cuda::device_count());
#else
  return 0;
#endif
}

std::vector<TokenOut> Generate(Engine& e, GenerateSpec s) {
  s.top_logprobs = 5;
  std::vector<TokenOut> out;
  auto r = e.GenerateBatch({s}, [&](size_t, const StreamDelta& d) {
    out.insert(out.end(), d.tokens.begin(), d.tokens.end());
  });
  EXPECT_TRUE(r.ok()) << r.status();
  return out;
}

TEST(TensorParallelCuda, RanksOnGpusFollowOneGpuOrPartAtNearTies) {
  if (!std::filesystem::exists(testing::DefaultModelPath())) GTEST_SKIP() << "bundled model absent";
  if (!NcclAvailable()) GTEST_SKIP() << "this build has no NCCL";
  if (Gpus() < 2) GTEST_SKIP() << "TP needs 2 GPUs, this machine has " << Gpus();
  // Both engines use cuda:0 (rank 0 of the TP one too): 1 GiB KV pools each.
  std::unique_ptr<Engine> one = testing::LoadBundledEngine("cuda", 1, 1ll << 30);
  ASSERT_NE(one, nullptr);
  const int tp = std::min(Gpus(), static_cast<int>(one->config().n_kv_heads));
  std::unique_ptr<Engine> sharded = testing::LoadBundledEngine("cuda", tp, 1ll << 30);
  ASSERT_NE(sharded, nullptr);
  const std::string fixture = testing::FixtureDir() + "/parity/smollm2_greedy.json";
  if (!std::filesystem::exists(fixture)) GTEST_SKIP() << "no parity fixture " << fixture;
  std::ifstream f(fixture);
  const nlohmann::json oracle = nlohmann::json::parse(f);
  struct Case {
    const char* strategy;
    const char* knobs;
  };
  for (const Case& c : {Case{"dense", ""}, Case{"entmax_kv", "token_budget=16,dense_layers=0"},
                        Case{"akv", "hot_budget=16,n_anchors=4,eviction_batch_size=4,recent_tokens_protected=8"}}) {
    int equal_prompts = 0;
    for (const nlohmann::json& p : oracle["prompts"]) {
      GenerateSpec s = testing::GreedySpec(p["prompt_ids"].get<std::vector<int32_t>>(), 24);
      s.kv.strategy = c.strategy;
      if (*c.knobs) {
        auto k = ParseKnobList(c.knobs);
        ASSERT_TRUE(k.ok()) << k.status();
        s.kv.knobs = *k;
      }
      const std::vector<TokenOut> a = Generate(*one, s), b = Generate(*sharded, s);
      ASSERT_EQ(a.size(), 24u);
      ASSERT_EQ(b.size(), 24u);
      size_t equal = 0;
      while (equal < a.size() && a[equal].id == b[equal].id) ++equal;
      std::string why = "all equal";
      if (equal < a.size()) {
        double margin = INFINITY;  // TP=1's logprob of its choice minus of the TP choice
        for (const auto& t : a[equal].top) {
          if (t.token_id == b[equal].id) margin = a[equal].logprob - t.logprob;
        }
        why = absl::StrFormat("parts at token %zu, TP=%d's choice %.3f nats below TP=1's", equal, tp, margin);
        EXPECT_LT(margin, 0.5) << c.strategy << " " << p["name"] << ": " << why;
      } else {
        ++equal_prompts;
      }
      std::printf("[tp-cuda] TP=%d %-9s %-10s %2zu/24 tokens equal to TP=1 (%s)\n", tp, c.strategy,
                  p["name"].get<std::string>().c_str(), equal, why.c_str());
      // Past the first parting too: TP=1 teacher-forced on the TP run's
      // tokens agrees or parts at near ties only (at most 10%).
      std::vector<int32_t> tp_ids;
      for (const TokenOut& t : b) tp_ids.push_back(t.id);
      testing::ExpectAloneAgreesOrNearTie(*one, s, tp_ids, std::string("TP=") + std::to_string(tp) + " " + c.strategy +
                                                               " " + p["name"].get<std::string>());
    }
    std::printf("[tp-cuda] TP=%d %s: %d/%zu parity prompts equal for 24 tokens\n", tp, c.strategy, equal_prompts,
                oracle["prompts"].size());
  }
  EXPECT_GT(sharded->model().decode_graph_replays(), 0) << "TP decode steps must replay CUDA graphs";
}

}  // namespace
}  // namespace kvstream
