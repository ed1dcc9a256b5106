// Benchmark of LaunchSqAttend (kernels/spectral_quant, K2) against the
// device's measured copy bandwidth, with LaunchDenseDecode (kernels/dense) on
// the same shape for the side-by-side ratio. Llama-3-8B decode: Hq 32,
// Hkv 8, D 128, one query token, SpectralQuant defaults (spectral_quant.md §3:
// K d_eff 4, 3 bits/dim = 12 words = 48 B; V v_d_eff 50 at 4 bits + 78 tail
// dims at 3 bits = 434 bits -> 14 words = 56 B per token and head; QJL off).
//
//   sq_attend_bench [--out results.json] [--commit SHA] [--iters 100] [--warmup 10] [--no-sweep] [--no-dense]
//                   [--variant new|legacy|both]
//
// --variant (default both): `new` times LaunchSqAttend (Tq == 1 runs the
// decode kernel, sq_attend_decode.cuh), `legacy` times LaunchSqAttendLegacy
// (the general AttendKernel every Tq used before), `both` times both in one run,
// prints both columns and checks that their outputs agree (max |new - legacy|
// / max |legacy| <= 1e-4, else exit 1). The JSON's time_us / gbps / pct_of_copy
// are the first timed variant's (new when both), plus "legacy" when timed.
//
// 1. Copy bandwidth: cudaMemcpy device-to-device of 1 GiB, (read + write) / median time.
// 2. For each Tk: the planned split count; CUDA events around each launch
//    (attention + merge), median of --iters runs after warm-up. Launches
//    rotate over enough record sets to span >= 4x L2, so no launch finds its
//    records in L2. Bytes = K + V records of the Tk keys + q' + A_eig written
//    (the split workspace, reported apart, is extra traffic).
// 3. Dense bf16 decode (page 16, pages in random order: dense_decode_timer.cuh) on the same (B, Tk).
// 4. Unless --no-sweep: every split count 1, 2, 4, ... 128 for the SQ kernel.
// The kernel serves one sequence per launch (spec §6.10), so B = 1 only.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/attention/bench_common.cuh"
#include "bench/attention/dense_decode_timer.cuh"
#include "kernels/spectral_quant/spectral_quant.h"

namespace {

using kvstream::bench::CopyGbps;
using kvstream::bench::FillRandomBf16;
using kvstream::bench::HashIndex;
using kvstream::bench::Median;
using kvstream::bench::MedianUs;

using kvstream::SqAttendParams;

constexpr int kHq = 32, kHkv = 8, kD = 128, kP = 16;
constexpr int kKDeff = 4, kVDeff = 50;

struct Args : kvstream::bench::BenchArgs {
  bool sweep = true, dense = true;
  bool run_new = true, run_legacy = true;  // --variant
};

using LaunchFn = cudaError_t (*)(const SqAttendParams&, cudaStream_t);

// Hash-random 32-bit words (any bit pattern is a valid record: every w-bit
// field is a code < 2^w).
__global__ void FillRandomU32(uint32_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    p[i] = HashIndex(i, seed);
  }
}
// Uniform fp32 in [-1, 1) from the same hash.
__global__ void FillRandomF32(float* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    p[i] = static_cast<float>(HashIndex(i, seed)) * (2.0f / 4294967296.0f) - 1.0f;
  }
}

// The default plan of one layer (every head alike), uploaded.
struct DevicePlan {
  kvstream::SqPlanView view;
  std::vector<void*> allocs;
  DevicePlan(int d_eff, const int* semantic_widths, int tail_width, uint32_t seed) {
    std::vector<uint8_t> w(kHkv * kD);
    std::vector<float> s(kHkv * kD);
    std::vector<uint16_t> off(kHkv * kD);
    std::vector<int32_t> de(kHkv, d_eff);
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> sig(0.05f, 2.0f);
    int bits = 0;
    for (int h = 0; h < kHkv; ++h) {
      for (int i = 0; i < kD; ++i) {
        w[h * kD + i] = static_cast<uint8_t>(i < d_eff ? semantic_widths[i] : tail_width);
        s[h * kD + i] = sig(rng);
      }
      bits = kvstream::SqPackBitOffsets(&w[h * kD], kD, &off[h * kD]);
    }
    view.width = Up(w), view.scale = Up(s), view.bit_offset = Up(off), view.d_eff = Up(de);
    view.words = kvstream::SqRecordWords(bits);
  }
  ~DevicePlan() {
    for (void* p : allocs) cudaFree(p);
  }
  template <class T>
  T* Up(const std::vector<T>& v) {
    void* d = nullptr;
    BENCH_CHECK(cudaMalloc(&d, v.size() * sizeof(T)));
    BENCH_CHECK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    allocs.push_back(d);
    return static_cast<T*>(d);
  }
};

struct Result {
  int tokens, splits;
  double sq_us, sq_bytes, sq_gbps, sq_pct, ws_bytes;
  double legacy_us, legacy_gbps, legacy_pct, max_rel_diff;
  int dense_splits;
  double dense_us, dense_bytes, dense_gbps, dense_pct;
};

Args Parse(int argc, char** argv) {
  Args a;
  kvstream::bench::ParseBenchArgs(argc, argv, &a, [&](const std::string& s, auto next) {
    if (s == "--no-sweep") a.sweep = false;
    else if (s == "--no-dense") a.dense = false;
    else if (s == "--variant" || s.rfind("--variant=", 0) == 0) {
      const std::string v = s == "--variant" ? next() : s.substr(10);
      if (v != "new" && v != "legacy" && v != "both") {
        std::fprintf(stderr, "--variant must be new, legacy or both\n");
        std::exit(2);
      }
      a.run_new = v != "legacy", a.run_legacy = v != "new";
    } else return false;
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
  std::printf("device %s, %d SMs, L2 %d MiB; copy %.0f GB/s\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, copy);

  // Defaults (§3, §4.2): K water-fill over d_eff 4 with budget 12 (the §9 test 2
  // shape [4, 3, 3, 2]), tail b_low 3; V 50 semantic dims at 4 bits, tail 3.
  const int kw[kKDeff] = {4, 3, 3, 2};
  std::vector<int> vw(kVDeff, 4);
  const DevicePlan kplan(kKDeff, kw, 3, 1), vplan(kVDeff, vw.data(), 3, 2);
  std::vector<float> tables(kvstream::kSqTableFloats);
  kvstream::SqBuildUnitTables(tables.data());
  float *d_tables = nullptr, *q = nullptr, *a_eig = nullptr, *ws = nullptr;
  BENCH_CHECK(cudaMalloc(&d_tables, tables.size() * 4));
  BENCH_CHECK(cudaMemcpy(d_tables, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
  BENCH_CHECK(cudaMalloc(&q, kHq * kD * 4));
  BENCH_CHECK(cudaMalloc(&a_eig, kHq * kD * 4));
  FillRandomF32<<<8, 256>>>(q, kHq * kD, 9);
  const size_t ws_max = kvstream::SqAttendWorkspaceBytes(kHq, 1, kvstream::kSqAttendMaxSplits, kD);
  BENCH_CHECK(cudaMalloc(&ws, ws_max));
  const int wk = kplan.view.words, wv = vplan.view.words;
  std::printf("records: K %d words (%d B), V %d words (%d B) per token and head\n", wk, 4 * wk, wv, 4 * wv);

  std::vector<Result> results;
  std::string sweep_json;
  for (const int T : {8192, 32768, 131072}) {
    const size_t rec_words = size_t(T) * kHkv * (wk + wv);
    const size_t set_bytes = rec_words * 4;
    const int rot = static_cast<int>(std::max<size_t>(2, (4 * size_t(prop.l2CacheSize) + set_bytes - 1) / set_bytes));
    std::vector<uint32_t*> sets(rot);
    for (int r = 0; r < rot; ++r) {
      BENCH_CHECK(cudaMalloc(&sets[r], set_bytes));
      FillRandomU32<<<1024, 256>>>(sets[r], rec_words, 17 + r);
    }
    BENCH_CHECK(cudaGetLastError());
    auto params = [&](int i, int splits) {
      SqAttendParams p;
      p.q_rot = q, p.k_records = sets[i % rot], p.v_records = sets[i % rot] + size_t(T) * kHkv * wk;
      p.k_plan = kplan.view, p.v_plan = vplan.view, p.tables = d_tables, p.a_eig = a_eig;
      p.workspace = splits > 1 ? ws : nullptr;
      p.num_q_heads = kHq, p.num_kv_heads = kHkv, p.head_dim = kD, p.num_queries = 1, p.num_keys = T;
      p.num_splits = splits, p.scale = 1.0f / std::sqrt(float(kD));
      return p;
    };
    const int splits = kvstream::SqPlanAttendSplits(kHq, kHkv, 1, T, prop.multiProcessorCount);
    // Outputs written and finite (each timed variant), and new == legacy.
    auto output = [&](LaunchFn fn, std::vector<float>* h) {
      BENCH_CHECK(cudaMemset(a_eig, 0xff, kHq * kD * 4));
      BENCH_CHECK(fn(params(0, splits), nullptr));
      h->resize(kHq * kD);
      BENCH_CHECK(cudaMemcpy(h->data(), a_eig, h->size() * 4, cudaMemcpyDeviceToHost));
      for (float x : *h)
        if (!std::isfinite(x)) { std::fprintf(stderr, "T=%d: non-finite output\n", T); std::exit(1); }
    };
    Result r{};
    r.tokens = T, r.splits = splits, r.max_rel_diff = -1.0;
    std::vector<float> h_new, h_old;
    if (a.run_new) output(kvstream::LaunchSqAttend, &h_new);
    if (a.run_legacy) output(kvstream::LaunchSqAttendLegacy, &h_old);
    if (a.run_new && a.run_legacy) {
      double num = 0.0, den = 0.0;
      for (size_t i = 0; i < h_new.size(); ++i) {
        num = std::max(num, double(std::fabs(h_new[i] - h_old[i])));
        den = std::max(den, double(std::fabs(h_old[i])));
      }
      r.max_rel_diff = den > 0.0 ? num / den : num;
      if (!(r.max_rel_diff <= 1e-4)) {
        std::fprintf(stderr, "T=%d: new vs legacy max rel diff %.3g > 1e-4\n", T, r.max_rel_diff);
        return 1;
      }
    }
    r.sq_bytes = double(set_bytes) + 2.0 * kHq * kD * 4;
    const LaunchFn first = a.run_new ? kvstream::LaunchSqAttend : kvstream::LaunchSqAttendLegacy;
    r.sq_us = MedianUs(a, [&](int i) { return first(params(i, splits), nullptr); });
    r.sq_gbps = r.sq_bytes / (r.sq_us * 1e-6) / 1e9, r.sq_pct = 100.0 * r.sq_gbps / copy;
    if (a.run_new && a.run_legacy) {
      r.legacy_us = MedianUs(a, [&](int i) { return kvstream::LaunchSqAttendLegacy(params(i, splits), nullptr); });
      r.legacy_gbps = r.sq_bytes / (r.legacy_us * 1e-6) / 1e9, r.legacy_pct = 100.0 * r.legacy_gbps / copy;
    }
    r.ws_bytes = 2.0 * kvstream::SqAttendWorkspaceBytes(kHq, 1, splits, kD);
    if (a.sweep) {
      std::printf("split sweep T=%d (planned %d, %d record sets):", T, splits, rot);
      sweep_json += (sweep_json.empty() ? "" : ",\n") + std::string("    {\"T\": ") + std::to_string(T) +
                    ", \"time_us_by_splits\": {";
      for (int s = 1; s <= kvstream::kSqAttendMaxSplits; s *= 2) {
        const float t = MedianUs(a, [&](int i) { return first(params(i, s), nullptr); });
        std::printf(" S=%d %.1fus", s, t);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s\"%d\": %.2f", s == 1 ? "" : ", ", s, t);
        sweep_json += buf;
      }
      sweep_json += "}}";
      std::printf("\n");
    }
    for (uint32_t* s : sets) cudaFree(s);
    if (a.dense) {  // dense bf16 decode on the same shape (bench/attention/dense_decode_timer.cuh)
      kvstream::bench::DenseDecodeShape shape;
      shape.tokens = T, shape.num_heads = kHq, shape.num_kv_heads = kHkv, shape.head_dim = kD, shape.page_size = kP;
      const kvstream::bench::DenseDecodeTiming t = kvstream::bench::TimeDenseDecode(a, shape, prop);
      r.dense_splits = t.splits, r.dense_us = t.us;
      r.dense_bytes = 2.0 * 2.0 * ((T + kP - 1) / kP) * kP * kHkv * kD + 2.0 * kHq * kD * 2;
      r.dense_gbps = r.dense_bytes / (r.dense_us * 1e-6) / 1e9, r.dense_pct = 100.0 * r.dense_gbps / copy;
    }
    results.push_back(r);
  }

  std::printf("\nsq = %s\n%7s %4s %9s %8s %8s %7s | %9s %7s %8s | %9s %8s %7s | %10s\n",
              a.run_new ? "LaunchSqAttend (decode kernel)" : "LaunchSqAttendLegacy", "Tk", "S", "sq_us", "sq_MB", "GB/s",
              "%copy", "legacy_us", "%copy", "old/new", "dense_us", "dense_MB", "%copy", "dense/sq");
  for (const Result& r : results) {
    std::printf("%7d %4d %9.1f %8.1f %8.0f %6.1f%% | %9.1f %6.1f%% %7.2fx | %9.1f %8.1f %6.1f%% | %9.2fx\n", r.tokens,
                r.splits, r.sq_us, r.sq_bytes / 1e6, r.sq_gbps, r.sq_pct, r.legacy_us, r.legacy_pct,
                r.sq_us > 0 ? r.legacy_us / r.sq_us : 0.0, r.dense_us, r.dense_bytes / 1e6, r.dense_pct,
                r.sq_us > 0 ? r.dense_us / r.sq_us : 0.0);
  }
  if (a.run_new && a.run_legacy) {
    for (const Result& r : results) std::printf("T=%d: new vs legacy max rel diff %.2e\n", r.tokens, r.max_rel_diff);
  }
  if (!a.out.empty()) {
    FILE* f = std::fopen(a.out.c_str(), "w");
    if (f == nullptr) { std::fprintf(stderr, "cannot write %s\n", a.out.c_str()); return 1; }
    std::fprintf(f, "{\n  \"bench\": \"sq_attend\",\n  \"device\": \"%s\",\n  \"commit\": \"%s\",\n", prop.name,
                 a.commit.c_str());
    std::fprintf(f, "  \"num_sms\": %d,\n  \"l2_bytes\": %d,\n  \"copy_gbps\": %.1f,\n", prop.multiProcessorCount,
                 prop.l2CacheSize, copy);
    std::fprintf(f, "  \"iters\": %d,\n  \"warmup\": %d,\n  \"statistic\": \"median\",\n", a.iters, a.warmup);
    std::fprintf(f, "  \"variant\": \"%s\",\n", a.run_new ? (a.run_legacy ? "both" : "new") : "legacy");
    std::fprintf(f, "  \"k_record_bytes\": %d,\n  \"v_record_bytes\": %d,\n  \"points\": [\n", 4 * wk, 4 * wv);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(f, "    {\"B\": 1, \"Tq\": 1, \"Tk\": %d, \"Hq\": %d, \"Hkv\": %d, \"D\": %d, \"k_d_eff\": %d, "
                   "\"v_d_eff\": %d, \"splits\": %d, \"time_us\": %.2f, \"bytes\": %.0f, \"workspace_bytes\": %.0f, "
                   "\"gbps\": %.1f, \"pct_of_copy\": %.1f, \"dense_bf16\": {\"splits\": %d, \"time_us\": %.2f, "
                   "\"bytes\": %.0f, \"gbps\": %.1f, \"pct_of_copy\": %.1f}, \"dense_over_sq_time\": %.3f",
                   r.tokens, kHq, kHkv, kD, kKDeff, kVDeff, r.splits, r.sq_us, r.sq_bytes, r.ws_bytes, r.sq_gbps,
                   r.sq_pct, r.dense_splits, r.dense_us, r.dense_bytes, r.dense_gbps, r.dense_pct,
                   r.sq_us > 0 ? r.dense_us / r.sq_us : 0.0);
      if (a.run_new && a.run_legacy) {
        std::fprintf(f, ", \"legacy\": {\"time_us\": %.2f, \"gbps\": %.1f, \"pct_of_copy\": %.1f}, "
                     "\"legacy_over_new_time\": %.3f, \"max_rel_diff_vs_legacy\": %.3g",
                     r.legacy_us, r.legacy_gbps, r.legacy_pct, r.sq_us > 0 ? r.legacy_us / r.sq_us : 0.0,
                     r.max_rel_diff);
      }
      std::fprintf(f, "}%s\n", i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"split_sweep\": [\n%s\n  ]\n}\n", sweep_json.c_str());
    std::fclose(f);
    std::printf("wrote %s\n", a.out.c_str());
  }
  cudaFree(d_tables), cudaFree(q), cudaFree(a_eig), cudaFree(ws);
  return 0;
}
