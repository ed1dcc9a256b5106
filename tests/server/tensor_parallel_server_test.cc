// The server with --tensor-parallel=3 (the bundled model's 3 KV heads, one
// rank thread each, --device=cpu) over loopback gRPC: greedy text equal to
// a TP=1 server's (both on fp32 weights: KVSTREAM_PACKED_WEIGHTS=0), for
// dense and EntmaxKV. (TP=2, an uneven split, and sizes over the KV heads:
// the engine test tensor_parallel_engine_test.)
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/server/server_harness.h"

namespace kvstream::testing {
namespace {

TEST(TensorParallelServer, GreedyTextEqualsTp1) {
  setenv("KVSTREAM_PACKED_WEIGHTS", "0", 1);  // inherited by the server processes
  auto one = ServerProcess::Start({"--device=cpu"});
  auto tp = ServerProcess::Start({"--device=cpu", "--tensor-parallel=3"});
  ASSERT_NE(one, nullptr);
  ASSERT_NE(tp, nullptr);
  for (const char* strategy : {"dense", "entmax_kv"}) {
    v1::GenerateRequest req = GreedyRequest("The three primary colours are", 24);
    if (std::string(strategy) == "entmax_kv") {
      req.mutable_kv_compression()->mutable_entmax_kv()->set_token_budget(16);
      req.mutable_kv_compression()->mutable_entmax_kv()->set_dense_layers(0);
    }
    StreamResult a = Generate(*one->Stub(), req), b = Generate(*tp->Stub(), req);
    ASSERT_TRUE(a.status.ok()) << a.status.error_message();
    ASSERT_TRUE(b.status.ok()) << b.status.error_message();
    EXPECT_EQ(a.token_ids, b.token_ids) << strategy;
    EXPECT_EQ(a.text, b.text) << strategy;
    ASSERT_TRUE(b.result.has_value());
    EXPECT_EQ(b.result->cache().strategy(), strategy);
    std::printf("[tp-server] %s: TP=3 text equals TP=1: %s\n", strategy, a.text == b.text ? "yes" : "no");
  }
}

}  // namespace
}  // namespace kvstream::testing
