// Tensor parallelism on GPUs through NCCL (issue 14) with the bundled real
// model: TP = its KV-head count (3 for SmolLM2-135M: 9 query heads cannot
// split in 2), one GPU per rank, bf16, against TP=1 on one GPU. The all-
// reduce sums bf16 partials where TP=1 sums in one GEMV, so greedy tokens
// may part at near ties: checked by teacher forcing (the TP=1 engine's top-1
// on the TP run's tokens, parting only within 0.5 nats, at most 10%), for
// dense, EntmaxKV and AKV; decode steps replay CUDA graphs at TP > 1.
// Skips where the machine has fewer GPUs than ranks or the build no NCCL.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

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

TEST(TensorParallelCuda, RanksOnGpusFollowOneGpuOrPartAtNearTies) {
  if (!std::filesystem::exists(testing::DefaultModelPath())) GTEST_SKIP() << "bundled model absent";
  if (!NcclAvailable()) GTEST_SKIP() << "this build has no NCCL";
  std::unique_ptr<Engine> probe = testing::LoadBundledEngine("cuda");
  ASSERT_NE(probe, nullptr);
  const int tp = static_cast<int>(probe->config().n_kv_heads);
  if (Gpus() < tp) GTEST_SKIP() << "TP=" << tp << " needs " << tp << " GPUs, this machine has " << Gpus();
  std::unique_ptr<Engine> sharded = testing::LoadBundledEngine("cuda", tp);
  ASSERT_NE(sharded, nullptr);
  struct Case {
    const char* strategy;
    const char* knobs;
  };
  for (const Case& c : {Case{"dense", ""}, Case{"entmax_kv", "token_budget=16,dense_layers=0"},
                        Case{"akv", "hot_budget=16,n_anchors=4,eviction_batch_size=4,recent_tokens_protected=8"}}) {
    for (const char* text : {"The capital of France is", "def fibonacci(n):",
                             "Once upon a time, in a village by the sea, there lived"}) {
      GenerateSpec s = testing::GreedySpec(probe->tokenizer().Encode(text, true), 24);
      s.kv.strategy = c.strategy;
      if (*c.knobs) {
        auto k = ParseKnobList(c.knobs);
        ASSERT_TRUE(k.ok()) << k.status();
        s.kv.knobs = *k;
      }
      auto r = sharded->GenerateBatch({s});
      ASSERT_TRUE(r.ok()) << r.status();
      testing::ExpectAloneAgreesOrNearTie(*probe, s, (*r)[0].token_ids,
                                          std::string("TP=") + std::to_string(tp) + " " + c.strategy + ": " + text);
    }
  }
  EXPECT_GT(sharded->model().decode_graph_replays(), 0) << "TP decode steps must replay CUDA graphs";
}

}  // namespace
}  // namespace kvstream
