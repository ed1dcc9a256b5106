// Load shapes for `kvstream bench` and the request fan-out of `kvstream
// eval`: a closed loop (N workers, each sends its next request when the last
// one ends) and an open loop (Poisson arrivals at a fixed rate).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "client/server_calls.h"

namespace kvstream::client {

// fn(i, start) for request i; `start` is when request i counts as issued.
using RequestFn = std::function<void(int64_t index, SteadyClock::time_point start)>;

// Requests 0..n-1 on `workers` threads; each starts when a worker is free
// (start = that moment). Returns when all are done.
void RunClosedLoop(int workers, int64_t n, const RequestFn& fn);

// Arrival offsets in seconds of n Poisson arrivals at `rate` per second
// (exponential gaps; the first arrives after one gap). Non-decreasing.
std::vector<double> PoissonArrivals(double rate, int64_t n, std::mt19937_64& rng);

// Requests 0..n-1 issued at `arrivals` (seconds after the call) on at most
// `max_in_flight` threads (0 = n). A request that finds every thread busy
// starts late, but its `start` stays the scheduled arrival, so the wait
// counts in its latency (no coordinated omission).
void RunOpenLoop(const std::vector<double>& arrivals, int max_in_flight, const RequestFn& fn);

}  // namespace kvstream::client
