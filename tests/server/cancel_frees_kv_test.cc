// Cancelled calls free their KV at the scheduler's next step: the server's
// KV bytes in use return to idle within 1 s.
#include <gtest/gtest.h>

#include <thread>

#include "tests/server/server_harness.h"

namespace kvstream::testing {
namespace {

TEST(CancelFreesKv, AfterThreeTokensKvReturnsToIdleWithinOneSecond) {
  auto server = ServerProcess::Start();
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  const int64_t idle = KvBytesInUse(*stub);
  ASSERT_EQ(idle, 0);
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, GreedyRequest("Write a very long essay about rivers.", 4000));
  v1::GenerateResponse resp;
  int tokens = 0;
  while (tokens < 3 && reader->Read(&resp)) tokens += resp.has_delta() ? resp.delta().token_ids_size() : 0;
  ASSERT_GE(tokens, 3);
  EXPECT_GT(KvBytesInUse(*stub), 0) << "the running request holds KV";
  ctx.TryCancel();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t now = -1;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1)) {
    now = KvBytesInUse(*stub);
    if (now == idle) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(now, idle) << "KV bytes still in use 1 s after the cancel";
  std::printf("[cancel] KV back to idle %.0f ms after the cancel\n", ms);
  while (reader->Read(&resp)) {}
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace kvstream::testing
