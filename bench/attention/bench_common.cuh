// Shared by the attention-kernel benches (dense_decode_bench, entmax_kv_decode_bench,
// sq_attend_bench, akv_attention_bench): CUDA error exit, deterministic device
// fills, the median, the copy bandwidth every bench reports its % against, the
// flags they all take and the timed-launch loop.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define BENCH_CHECK(expr)                                                                         \
  do {                                                                                            \
    const cudaError_t e_ = (expr);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

namespace kvstream::bench {

// A 32-bit hash of (index, seed): the benches' random data without host uploads.
__device__ __forceinline__ uint32_t HashIndex(size_t i, uint32_t seed) {
  uint32_t x = static_cast<uint32_t>(i) * 0x9e3779b9u ^ seed ^ static_cast<uint32_t>(i >> 32) * 0x85ebca6bu;
  x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
  return x;
}

// Uniform values in [-1, 1) from the hash (never all zeros).
__global__ void FillRandomBf16(__nv_bfloat16* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    p[i] = __float2bfloat16(static_cast<float>(HashIndex(i, seed)) * (2.0f / 4294967296.0f) - 1.0f);
  }
}

inline float Median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// cudaMemcpy device-to-device of 1 GiB: (read + write) bytes / median time, GB/s.
inline double CopyGbps() {
  const size_t bytes = size_t(1) << 30;
  void *src = nullptr, *dst = nullptr;
  BENCH_CHECK(cudaMalloc(&src, bytes));
  BENCH_CHECK(cudaMalloc(&dst, bytes));
  FillRandomBf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(src), bytes / 2, 1);
  BENCH_CHECK(cudaGetLastError());
  cudaEvent_t e0, e1;
  BENCH_CHECK(cudaEventCreate(&e0));
  BENCH_CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 5 + 30; ++i) {
    BENCH_CHECK(cudaEventRecord(e0));
    BENCH_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice));
    BENCH_CHECK(cudaEventRecord(e1));
    BENCH_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    BENCH_CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 5) ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (Median(ms) * 1e-3) / 1e9;
}

// A flag's comma-separated integers, each in [lo, hi]; a bad one is a usage
// error (exit 2) naming the flag and the range.
inline std::vector<int> ParseIntList(const std::string& flag, const std::string& v, int lo, int hi) {
  std::vector<int> r;
  for (size_t at = 0; at <= v.size();) {
    const size_t comma = std::min(v.find(',', at), v.size());
    const std::string item = v.substr(at, comma - at);
    const int x = std::atoi(item.c_str());
    if (x < lo || x > hi) {
      std::fprintf(stderr, "%s: '%s' is not in [%d, %d]\n", flag.c_str(), item.c_str(), lo, hi);
      std::exit(2);
    }
    r.push_back(x);
    at = comma + 1;
  }
  return r;
}

// The flags every bench takes; a bench's Args derives from it.
struct BenchArgs {
  std::string out, commit = "unknown";
  int iters = 100, warmup = 10;
};

// Walks argv: --out, --commit, --iters (>= 50), --warmup (>= 1) fill *common;
// any other flag goes to own(flag, next), which returns false for a flag it
// does not know. A missing value or an unknown flag is a usage error (exit 2).
template <class Own>
void ParseBenchArgs(int argc, char** argv, BenchArgs* common, Own own) {
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "%s needs a value\n", s.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (s == "--out") common->out = next();
    else if (s == "--commit") common->commit = next();
    else if (s == "--iters") common->iters = std::max(50, std::atoi(next().c_str()));
    else if (s == "--warmup") common->warmup = std::max(1, std::atoi(next().c_str()));
    else if (!own(s, next)) { std::fprintf(stderr, "unknown argument %s\n", s.c_str()); std::exit(2); }
  }
}

// Median of a.iters timed launches (launch(i) returns cudaError_t), after
// a.warmup untimed ones, us. Launches go back to back, each between two events.
template <class F>
float MedianUs(const BenchArgs& a, F launch) {
  for (int i = 0; i < a.warmup; ++i) BENCH_CHECK(launch(i));
  BENCH_CHECK(cudaDeviceSynchronize());
  std::vector<cudaEvent_t> ev(2 * a.iters);
  for (cudaEvent_t& e : ev) BENCH_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < a.iters; ++i) {
    BENCH_CHECK(cudaEventRecord(ev[2 * i]));
    BENCH_CHECK(launch(a.warmup + i));
    BENCH_CHECK(cudaEventRecord(ev[2 * i + 1]));
  }
  BENCH_CHECK(cudaDeviceSynchronize());
  std::vector<float> us(a.iters);
  for (int i = 0; i < a.iters; ++i) {
    BENCH_CHECK(cudaEventElapsedTime(&us[i], ev[2 * i], ev[2 * i + 1]));
    us[i] *= 1000.0f;
  }
  for (cudaEvent_t& e : ev) cudaEventDestroy(e);
  return Median(us);
}

// Median us per launch of n launches captured back to back in one CUDA
// graph, as a decode step's layers run: no host launch, graph launch or event
// between them, so a short kernel's time is its own (with its ramp, tail and
// the gap to the next kernel). enqueue(i, stream) enqueues launch i.
template <class F>
float StepUs(const BenchArgs& a, int n, F enqueue) {
  cudaStream_t s = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  BENCH_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < n; ++i) BENCH_CHECK(enqueue(i, s));
  cudaGraph_t g = nullptr;
  cudaGraphExec_t exec = nullptr;
  BENCH_CHECK(cudaStreamEndCapture(s, &g));
  BENCH_CHECK(cudaGraphInstantiate(&exec, g, 0));
  const float us = MedianUs(a, [&](int) { return cudaGraphLaunch(exec, nullptr); }) / n;
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  return us;
}

}  // namespace kvstream::bench
