// Closed- and open-loop request scheduling (client/request_pool.h). No server.
#include "client/request_pool.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"

namespace kvstream::client {
namespace {

TEST(ClosedLoop, RunsEveryRequestOnceWithAtMostNInFlight) {
  std::vector<std::atomic<int>> runs(50);
  std::atomic<int> in_flight{0}, most{0};
  RunClosedLoop(4, 50, [&](int64_t i, SteadyClock::time_point) {
    const int now = ++in_flight;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ++runs[static_cast<size_t>(i)];
    --in_flight;
  });
  for (auto& r : runs) EXPECT_EQ(r.load(), 1);
  EXPECT_LE(most.load(), 4);
  EXPECT_GE(most.load(), 2);
}

TEST(PoissonArrivals, HaveTheRequestedMeanRateAndIncrease) {
  std::mt19937_64 rng(5);
  const std::vector<double> t = PoissonArrivals(20.0, 20000, rng);
  ASSERT_EQ(t.size(), 20000u);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_GT(t.front(), 0.0);
  EXPECT_NEAR(t.back() / 20000.0, 1.0 / 20.0, 0.002);  // mean gap 1/rate
}

TEST(OpenLoop, StartIsTheScheduledArrivalEvenWhenThreadsAreBusy) {
  const std::vector<double> arrivals = {0.01, 0.02, 0.03, 0.04};
  std::mutex mu;
  std::vector<SteadyClock::time_point> starts(4), began(4);
  const auto t0 = SteadyClock::now();
  // One thread: each request takes 30 ms, so requests 1..3 begin late.
  RunOpenLoop(arrivals, 1, [&](int64_t i, SteadyClock::time_point start) {
    std::lock_guard<std::mutex> lock(mu);
    starts[static_cast<size_t>(i)] = start;
    began[static_cast<size_t>(i)] = SteadyClock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  });
  for (size_t i = 0; i < 4; ++i) {
    const double scheduled = std::chrono::duration<double>(starts[i] - t0).count();
    EXPECT_NEAR(scheduled, arrivals[i], 0.005) << i;
    EXPECT_GE(began[i], starts[i]) << i;  // never before its arrival
  }
  EXPECT_GT(began[3] - starts[3], std::chrono::milliseconds(40));  // waited for the busy thread
}

}  // namespace
}  // namespace kvstream::client
