#include "client/request_pool.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace kvstream::client {

void RunClosedLoop(int workers, int64_t n, const RequestFn& fn) {
  std::atomic<int64_t> next{0};
  std::vector<std::thread> threads;
  const int count = static_cast<int>(std::clamp<int64_t>(workers, 1, std::max<int64_t>(n, 1)));
  for (int w = 0; w < count; ++w) {
    threads.emplace_back([&] {
      for (int64_t i = next++; i < n; i = next++) fn(i, SteadyClock::now());
    });
  }
  for (auto& t : threads) t.join();
}

std::vector<double> PoissonArrivals(double rate, int64_t n, std::mt19937_64& rng) {
  std::exponential_distribution<double> gap(rate);
  std::vector<double> out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)));
  double t = 0;
  for (int64_t i = 0; i < n; ++i) {
    t += gap(rng);
    out.push_back(t);
  }
  return out;
}

void RunOpenLoop(const std::vector<double>& arrivals, int max_in_flight, const RequestFn& fn) {
  const int64_t n = static_cast<int64_t>(arrivals.size());
  const SteadyClock::time_point t0 = SteadyClock::now();
  std::atomic<int64_t> next{0};
  std::vector<std::thread> threads;
  const int64_t count = max_in_flight <= 0 ? n : std::min<int64_t>(max_in_flight, n);
  for (int64_t w = 0; w < count; ++w) {
    threads.emplace_back([&] {
      // Indices are taken in arrival order, so a free thread always serves
      // the earliest request not yet started.
      for (int64_t i = next++; i < n; i = next++) {
        const auto at = t0 + std::chrono::duration_cast<SteadyClock::duration>(
                                 std::chrono::duration<double>(arrivals[static_cast<size_t>(i)]));
        std::this_thread::sleep_until(at);
        fn(i, at);
      }
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace kvstream::client
