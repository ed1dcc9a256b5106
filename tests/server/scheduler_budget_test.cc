// Continuous batching under a small KV budget and under churn, through the
// real server: the budget is never exceeded, every accepted request ends with
// a result or a status, and KV returns to idle.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <regex>
#include <thread>

#include "tests/server/server_harness.h"

namespace kvstream::testing {
namespace {

// Dense: 30 layers x (K+V) x 3 heads x 64 dims x element bytes (fp32 on CPU,
// bf16 on CUDA, where 6 rather than 3 requests fit the same budget).
int64_t BytesPerToken(const std::string& dtype) { return 30 * 2 * 3 * 64 * (dtype == "BFloat16" ? 2 : 4); }

TEST(SchedulerBudget, OnlyKFitAtOnceAndNoneAreLost) {
  // Each request: ~8 prompt + 40 new tokens -> 48 slots -> 2.2 MB; 3 fit in 7 MB.
  const int64_t budget = 7'000'000;
  auto server = ServerProcess::Start({"--kv-budget-bytes=" + std::to_string(budget)});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  std::atomic<int> max_running{0}, max_in_use_bytes{0};
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    while (!done) {
      grpc::ClientContext c;
      v1::ModelInfo info;
      if (stub->GetModelInfo(&c, v1::GetModelInfoRequest(), &info).ok()) {
        max_running = std::max<int>(max_running, info.running_requests());
        max_in_use_bytes = std::max<int>(max_in_use_bytes, static_cast<int>(info.kv_bytes_in_use()));
        EXPECT_LE(info.kv_bytes_in_use(), budget);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  std::vector<std::thread> clients;
  std::vector<StreamResult> results(10);
  for (int i = 0; i < 10; ++i) {
    clients.emplace_back([&, i] { results[i] = Generate(*server->Stub(), GreedyRequest("Request number " + std::to_string(i), 40)); });
  }
  for (auto& t : clients) t.join();
  done = true;
  watcher.join();
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_TRUE(results[i].result.has_value()) << i;
  }
  grpc::ClientContext ci;
  v1::ModelInfo model;
  ASSERT_TRUE(stub->GetModelInfo(&ci, v1::GetModelInfoRequest(), &model).ok());
  const int k = static_cast<int>(budget / (48 * BytesPerToken(model.dtype())));
  EXPECT_LE(max_running.load(), k) << "more requests ran at once than the budget allows";
  EXPECT_GE(max_running.load(), 2) << "the scheduler should batch what fits";
  // The peak the scheduler itself saw, from /metrics-equivalent state.
  EXPECT_LE(max_in_use_bytes.load(), budget);
  EXPECT_EQ(KvBytesInUse(*stub), 0);
  std::printf("[budget] %d of 10 ran at once (k=%d), peak KV in use %d of %lld bytes\n", max_running.load(), k,
              max_in_use_bytes.load(), static_cast<long long>(budget));
}

TEST(SchedulerSoak, SixtyFourClientsWithCancelsAndDeadlines) {
  auto server = ServerProcess::Start({"--metrics-port=0"});
  ASSERT_NE(server, nullptr);
  std::atomic<int> ended{0}, ok{0}, cancelled{0}, deadline{0}, other{0};
  const auto stop_at = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<std::thread> clients;
  for (int c = 0; c < 64; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(c);
      auto stub = server->Stub();
      for (int round = 0; round < 3 && std::chrono::steady_clock::now() < stop_at; ++round) {
        v1::GenerateRequest req = GreedyRequest("Client " + std::to_string(c) + " round " + std::to_string(round), 4 + rng() % 24);
        grpc::ClientContext ctx;
        const int mode = rng() % 4;  // 0: cancel mid-stream, 1: short deadline, else run to the end
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(mode == 1 ? 50 + rng() % 400 : 120000));
        auto reader = stub->Generate(&ctx, req);
        v1::GenerateResponse resp;
        int seen = 0;
        bool result = false;
        while (reader->Read(&resp)) {
          result |= resp.has_result();
          if (mode == 0 && ++seen == 2) ctx.TryCancel();
        }
        grpc::Status s = reader->Finish();
        ended++;
        if (s.ok()) {
          EXPECT_TRUE(result) << "an OK stream must end with a result";
          ok++;
        } else if (s.error_code() == grpc::StatusCode::CANCELLED) {
          cancelled++;
        } else if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          deadline++;
        } else {
          other++;
          ADD_FAILURE() << "unexpected status " << s.error_code() << ": " << s.error_message();
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  auto stub = server->Stub();
  int64_t in_use = -1;
  for (int i = 0; i < 100 && in_use != 0; ++i) {
    in_use = KvBytesInUse(*stub);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(in_use, 0) << "KV bytes in use did not return to idle";
  EXPECT_EQ(server->Health(), "SERVING");
  grpc::ClientContext c;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&c, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.running_requests(), 0);
  EXPECT_EQ(info.queued_requests(), 0);
  std::printf("[soak] %d streams ended: %d ok, %d cancelled, %d deadline, %d other\n", ended.load(), ok.load(),
              cancelled.load(), deadline.load(), other.load());
  EXPECT_GT(ok.load(), 0);
  EXPECT_GT(cancelled.load() + deadline.load(), 0);
}

}  // namespace
}  // namespace kvstream::testing
