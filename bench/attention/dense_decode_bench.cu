// Benchmark of LaunchDenseDecode (kernels/dense) against the device's measured
// copy bandwidth. GQA 32/8, D = 128, bf16, page size 16, shuffled page ids.
//
//   dense_decode_bench [--out results.json] [--commit SHA] [--iters 100] [--warmup 10] [--no-sweep]
//
// 1. Copy bandwidth: cudaMemcpy device-to-device of a 1 GiB buffer, (read +
//    write bytes) / median time.
// 2. For each (B, T): the planned split count; CUDA events around each launch
//    (attention + merge) after warm-up, median of --iters runs. Twice: with the
//    separate merge kernel (time_us), and as the engine launches it (fused_us:
//    the step's K/V row appended and the splits merged inside the kernel). Consecutive
//    launches use different KV pools (at least 2, and enough that all of them
//    span >= 4x the L2 size), so no launch finds its KV in L2.
//    Bytes = K + V of the live tokens + q + out (the split workspace, counted
//    apart, is extra traffic the kernel pays for).
// 3. Unless --no-sweep: the fused launch for every split count 1, 2, 4, ... 128,
//    to check the planner's choice.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/attention/bench_common.cuh"
#include "kernels/dense/dense_decode.h"

namespace {

using kvstream::bench::CopyGbps;
using kvstream::bench::FillRandomBf16;
using kvstream::bench::Median;

using kvstream::DenseDecodeParams;
using kvstream::KvDType;

constexpr int kH = 32, kHkv = 8, kD = 128, kP = 16;

struct Args : kvstream::bench::BenchArgs {
  bool sweep = true;
};

struct Result {
  int batch, tokens, splits, ctas_per_sm;
  double time_us, bytes, gbps, pct, workspace_bytes;
  double fused_us, fused_pct;
};

// One (B, T) shape: R rotating sets of pools/tables/q/out; returns the median
// time of a launch with `splits` splits.
class Shape {
 public:
  Shape(int batch, int tokens, size_t l2_bytes) : b_(batch), t_(tokens) {
    pages_ = (tokens + kP - 1) / kP;
    const size_t nb = size_t(batch) * pages_;
    pool_elems_ = nb * kHkv * kP * kD;
    const size_t kv_bytes = 2 * pool_elems_ * 2;
    rot_ = static_cast<int>(std::max<size_t>(2, (4 * l2_bytes + kv_bytes - 1) / kv_bytes));
    std::mt19937 rng(batch * 1000003u + tokens);
    std::vector<int32_t> lens(batch, tokens);
    BENCH_CHECK(cudaMalloc(&seq_lens_, batch * 4));
    BENCH_CHECK(cudaMemcpy(seq_lens_, lens.data(), batch * 4, cudaMemcpyHostToDevice));
    for (int r = 0; r < rot_; ++r) {
      Set s;
      BENCH_CHECK(cudaMalloc(&s.k, pool_elems_ * 2));
      BENCH_CHECK(cudaMalloc(&s.v, pool_elems_ * 2));
      BENCH_CHECK(cudaMalloc(&s.q, size_t(batch) * kH * kD * 2));
      BENCH_CHECK(cudaMalloc(&s.out, size_t(batch) * kH * kD * 2));
      BENCH_CHECK(cudaMalloc(&s.table, nb * 4));
      FillRandomBf16<<<1024, 256>>>(s.k, pool_elems_, 3 * r + 1);
      FillRandomBf16<<<1024, 256>>>(s.v, pool_elems_, 3 * r + 2);
      FillRandomBf16<<<64, 256>>>(s.q, size_t(batch) * kH * kD, 3 * r + 3);
      BENCH_CHECK(cudaGetLastError());
      std::vector<int32_t> ids(nb);
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);  // fragmented pool: pages in random order
      BENCH_CHECK(cudaMemcpy(s.table, ids.data(), nb * 4, cudaMemcpyHostToDevice));
      sets_.push_back(s);
    }
    const kvstream::DenseDecodeWorkspaceBytes ws =
        kvstream::DenseDecodeWorkspace(batch, kH, kvstream::kDenseDecodeMaxSplits, kD);
    BENCH_CHECK(cudaMalloc(&partial_out_, ws.partial_out));
    BENCH_CHECK(cudaMalloc(&partial_lse_, ws.partial_lse));
    BENCH_CHECK(cudaMalloc(&kv_new_, size_t(2) * batch * kHkv * kD * 2));  // k_new then v_new
    FillRandomBf16<<<64, 256>>>(kv_new_, size_t(2) * batch * kHkv * kD, 7);
    BENCH_CHECK(cudaMalloc(&counters_, size_t(batch) * kH * 4));
    BENCH_CHECK(cudaMemset(counters_, 0, size_t(batch) * kH * 4));  // the kernel leaves them zero
    BENCH_CHECK(cudaDeviceSynchronize());
  }
  ~Shape() {
    for (Set& s : sets_) {
      cudaFree(s.k); cudaFree(s.v); cudaFree(s.q); cudaFree(s.out); cudaFree(s.table);
    }
    cudaFree(seq_lens_); cudaFree(partial_out_); cudaFree(partial_lse_); cudaFree(kv_new_); cudaFree(counters_);
  }

  // fused: as PagedDenseStrategy launches it (k_new/v_new appended, split_counters).
  DenseDecodeParams Params(int r, int splits, bool fused = false) const {
    DenseDecodeParams p;
    p.q = sets_[r].q;
    p.k_pool = sets_[r].k;
    p.v_pool = sets_[r].v;
    p.block_table = sets_[r].table;
    p.seq_lens = seq_lens_;
    p.out = sets_[r].out;
    p.partial_out = splits > 1 ? partial_out_ : nullptr;
    p.partial_lse = splits > 1 ? partial_lse_ : nullptr;
    p.batch = b_;
    p.num_heads = kH;
    p.num_kv_heads = kHkv;
    p.head_dim = kD;
    p.page_size = kP;
    p.num_blocks = b_ * pages_;
    p.max_blocks_per_seq = pages_;
    p.max_seq_len = t_;
    p.num_splits = splits;
    p.scale = 1.0f / std::sqrt(float(kD));
    p.dtype = KvDType::kBf16;
    if (fused) {
      p.k_new = kv_new_;
      p.v_new = kv_new_ + size_t(b_) * kHkv * kD;
      p.split_counters = splits > 1 ? counters_ : nullptr;
    }
    return p;
  }

  float MedianUs(const Args& a, int splits, bool fused = false) const {
    return kvstream::bench::MedianUs(
        a, [&](int i) { return kvstream::LaunchDenseDecode(Params(i % rot_, splits, fused), nullptr); });
  }

  // Poisons out (0xff = NaN), runs once, and counts outputs that are not finite.
  int NonFiniteOutputs(int splits, bool fused) const {
    const size_t n = size_t(b_) * kH * kD;
    BENCH_CHECK(cudaMemset(sets_[0].out, 0xff, n * 2));
    BENCH_CHECK(kvstream::LaunchDenseDecode(Params(0, splits, fused), nullptr));
    BENCH_CHECK(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> host(n);
    BENCH_CHECK(cudaMemcpy(host.data(), sets_[0].out, n * 2, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (const __nv_bfloat16& x : host) bad += !std::isfinite(__bfloat162float(x));
    return bad;
  }

  double Bytes() const {  // K + V of live tokens, q, out
    return 2.0 * b_ * t_ * kHkv * kD * 2 + 2.0 * b_ * kH * kD * 2;
  }
  int rotations() const { return rot_; }

 private:
  struct Set {
    __nv_bfloat16 *k = nullptr, *v = nullptr, *q = nullptr, *out = nullptr;
    int32_t* table = nullptr;
  };
  int b_, t_, pages_ = 0, rot_ = 1;
  size_t pool_elems_ = 0;
  std::vector<Set> sets_;
  int32_t* seq_lens_ = nullptr;
  float *partial_out_ = nullptr, *partial_lse_ = nullptr;
  __nv_bfloat16* kv_new_ = nullptr;
  int* counters_ = nullptr;
};

Args Parse(int argc, char** argv) {
  Args a;
  kvstream::bench::ParseBenchArgs(argc, argv, &a, [&](const std::string& s, auto next) {
    if (s == "--no-sweep") a.sweep = false;
    else return false;
    (void)next;
    return true;
  });
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy = CopyGbps();
  int ctas = 0;
  BENCH_CHECK(kvstream::DenseDecodeOccupancy(kD, KvDType::kBf16, kH / kHkv, &ctas));
  std::printf("device %s, %d SMs, L2 %d MiB; copy %.0f GB/s; %d CTAs/SM (planner assumes %d)\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, copy, ctas, kvstream::kDenseDecodeCtasPerSm);

  const int shapes[][2] = {{1, 1024},  {1, 4096},  {1, 8192},  {1, 32768}, {1, 131072},
                           {8, 8192},  {8, 32768}, {32, 8192}, {64, 8192}};
  std::vector<Result> results;
  std::string sweep_json;
  for (const auto& bt : shapes) {
    const Shape sh(bt[0], bt[1], prop.l2CacheSize);
    const int splits = kvstream::PlanDenseDecodeSplits(bt[0], kH, kHkv, bt[1], prop.multiProcessorCount);
    for (const bool fused : {false, true}) {
      if (const int bad = sh.NonFiniteOutputs(splits, fused); bad != 0) {
        std::fprintf(stderr, "B=%d T=%d fused=%d: %d outputs not finite (unwritten or wrong)\n", bt[0], bt[1],
                     fused, bad);
        return 1;
      }
    }
    const float us = sh.MedianUs(a, splits);
    const float fused_us = sh.MedianUs(a, splits, true);
    const kvstream::DenseDecodeWorkspaceBytes ws = kvstream::DenseDecodeWorkspace(bt[0], kH, splits, kD);
    Result r{bt[0], bt[1], splits, ctas, us, sh.Bytes(), 0, 0, 2.0 * (ws.partial_out + ws.partial_lse), fused_us, 0};
    r.gbps = r.bytes / (us * 1e-6) / 1e9;
    r.pct = 100.0 * r.gbps / copy;
    r.fused_pct = 100.0 * r.bytes / (fused_us * 1e-6) / 1e9 / copy;
    results.push_back(r);
    if (a.sweep) {
      std::printf("split sweep B=%d T=%d (planned %d, %d pool sets):", bt[0], bt[1], splits, sh.rotations());
      sweep_json += (sweep_json.empty() ? "" : ",\n") + std::string("    {\"B\": ") + std::to_string(bt[0]) +
                    ", \"T\": " + std::to_string(bt[1]) + ", \"time_us_by_splits\": {";
      bool first = true;
      for (int s = 1; s <= kvstream::kDenseDecodeMaxSplits; s *= 2) {
        if (bt[1] / s < kvstream::kDenseDecodeSplitAlign) break;
        const float t = sh.MedianUs(a, s, /*fused=*/true);
        std::printf(" S=%d %.1fus", s, t);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s\"%d\": %.2f", first ? "" : ", ", s, t);
        sweep_json += buf;
        first = false;
      }
      sweep_json += "}}";
      std::printf("\n");
    }
  }

  std::printf("\n%5s %7s %6s %10s %10s %9s %7s %9s %7s\n", "B", "T", "S", "time_us", "MB", "GB/s", "%copy",
              "fused_us", "%copy");
  for (const Result& r : results) {
    std::printf("%5d %7d %6d %10.1f %10.1f %9.0f %6.1f%% %9.1f %6.1f%%\n", r.batch, r.tokens, r.splits, r.time_us,
                r.bytes / 1e6, r.gbps, r.pct, r.fused_us, r.fused_pct);
  }
  if (!a.out.empty()) {
    FILE* f = std::fopen(a.out.c_str(), "w");
    if (f == nullptr) { std::fprintf(stderr, "cannot write %s\n", a.out.c_str()); return 1; }
    std::fprintf(f, "{\n  \"bench\": \"dense_decode\",\n  \"device\": \"%s\",\n  \"commit\": \"%s\",\n", prop.name,
                 a.commit.c_str());
    std::fprintf(f, "  \"num_sms\": %d,\n  \"l2_bytes\": %d,\n  \"copy_gbps\": %.1f,\n", prop.multiProcessorCount,
                 prop.l2CacheSize, copy);
    std::fprintf(f, "  \"iters\": %d,\n  \"warmup\": %d,\n  \"statistic\": \"median\",\n", a.iters, a.warmup);
    std::fprintf(f, "  \"points\": [\n");  // same row fields as sdpa_decode_bench.py, plus the plan
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(f, "    {\"B\": %d, \"T\": %d, \"H\": %d, \"Hkv\": %d, \"D\": %d, \"P\": %d, \"dtype\": \"bf16\", "
                   "\"splits\": %d, \"ctas_per_sm\": %d, \"time_us\": %.2f, \"bytes\": %.0f, "
                   "\"workspace_bytes\": %.0f, \"gbps\": %.1f, \"pct_of_copy\": %.1f, \"copy_gbps\": %.1f, "
                   "\"fused_us\": %.2f, \"fused_pct_of_copy\": %.1f}%s\n",
                   r.batch, r.tokens, kH, kHkv, kD, kP, r.splits, r.ctas_per_sm, r.time_us, r.bytes,
                   r.workspace_bytes, r.gbps, r.pct, copy, r.fused_us, r.fused_pct, i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"split_sweep\": [\n%s\n  ]\n}\n", sweep_json.c_str());
    std::fclose(f);
    std::printf("wrote %s\n", a.out.c_str());
  }
  return 0;
}
