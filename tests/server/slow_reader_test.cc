// A client that does not read its stream never blocks the others: the
// engine posts into a bounded per-request buffer (deltas beyond it merge),
// and the slow client still receives every token once it reads.
#include <gtest/gtest.h>

#include <thread>

#include "tests/server/server_harness.h"

namespace kvstream::testing {
namespace {

TEST(SlowReader, DoesNotBlockOtherStreamsAndLosesNoTokens) {
  auto server = ServerProcess::Start();
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  grpc::ClientContext slow_ctx;
  auto slow = stub->Generate(&slow_ctx, GreedyRequest("Write a long list of animals:", 64));
  // Do not read `slow` while another request runs start to end.
  const auto t0 = std::chrono::steady_clock::now();
  StreamResult fast = Generate(*server->Stub(), GreedyRequest("Say hi", 8));
  const double fast_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(fast.status.ok()) << fast.status.error_message();
  EXPECT_EQ(fast.token_ids.size(), 8u);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // let the slow stream's buffer fill
  v1::GenerateResponse resp;
  std::vector<int32_t> ids;
  int messages = 0;
  bool result = false;
  while (slow->Read(&resp)) {
    ++messages;
    if (resp.has_delta()) ids.insert(ids.end(), resp.delta().token_ids().begin(), resp.delta().token_ids().end());
    result |= resp.has_result();
  }
  ASSERT_TRUE(slow->Finish().ok());
  EXPECT_TRUE(result);
  EXPECT_EQ(ids.size(), 64u) << "merged deltas must still carry every token";
  // Same tokens as an attentive reader gets.
  EXPECT_EQ(ids, Generate(*server->Stub(), GreedyRequest("Write a long list of animals:", 64)).token_ids);
  std::printf("[slow-reader] fast request done in %.2f s while the slow one was unread; slow stream: %d messages for %zu tokens\n",
              fast_s, messages, ids.size());
}

}  // namespace
}  // namespace kvstream::testing
