// Decode benchmark of LaunchAkvMixedAttention (kernels/akv, akv.md §7
// akv_mixed_attention) against the device's measured copy bandwidth, with
// LaunchDenseDecode (kernels/dense) on the same number of tokens for the
// side-by-side ratio. Llama-3-8B layer: Hq 32, Hkv 8, D 128, bf16 hot tier,
// warm group size 128, n_hot 1024, one query row (M = 1). Issue acceptance:
// bytes per step / time >= 70% of the copy bandwidth at n_warm >= 8K.
//
//   akv_attention_bench [--out results.json] [--commit SHA] [--iters 100] [--warmup 10]
//                       [--warm 2048,8192,32768,131072] [--bits 2,4,8] [--splits S (0: the planner's)]
//
// 1. Copy bandwidth: cudaMemcpy device-to-device of 1 GiB, (read + write) / median time.
// 2. Guard, per bits: n_warm 2048, one layer, planned splits: the tensor-core
//    path's output against the CUDA-core path's, max |tc - cc| / max |cc|;
//    above 1e-2 the bench exits 1 (a fast wrong kernel is no result).
// 3. Per (bits, n_warm), path kCudaCore then kTensorCore: splits from
//    PlanAkvAttentionSplits, CUDA events around each launch (attention +
//    merge), median of --iters after --warmup. The tiers are stacked over L
//    layers and launch i reads layer i % L, with L such that the layers span
//    >= 4x L2 (and the stack stays under kMemBudget): no launch finds its rows
//    in L2. A path the launcher refuses (cudaErrorInvalidValue: the
//    tensor-core kernel is not in this build) is reported "n/a".
// 4. Dense bf16 paged decode (page 16, shuffled page ids, planned splits) at
//    T = n_hot + n_warm, pools rotated the same way.
//
// Bytes per step (akv.md §7; the acceptance's numerator), e = 2 (bf16), Gn = D / g:
//     n_hot * 2*Hkv*D*e                 hot K + V
//   + n_warm * 2*Hkv*(D*b/8 + 4*Gn)     warm K + V codes, fp16 scale + zero per group
//   + 4*(n_hot + n_warm)                hot and warm positions (int32)
//   + 2*Hq*D*e                          q + out
// The split partials (written by the splits, read by the merge) are extra
// traffic the kernel pays for, not counted (as in the other attention benches).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/attention/akv_bench_tiers.cuh"
#include "bench/attention/bench_common.cuh"
#include "kernels/akv/akv_attention.h"
#include "kernels/dense/dense_decode.h"

namespace {

using kvstream::bench::CopyGbps;
using kvstream::bench::FillRandomBf16;
using kvstream::bench::MedianUs;

using namespace kvstream;             // NOLINT: bench-local
using namespace kvstream::akv_bench;  // NOLINT: the shared tiers, shape and dense timer

constexpr int kCheckWarm = 2048;     // the guard's small point
constexpr double kCheckTol = 1e-2;   // guard: max |tc - cc| / max |cc|

struct Args : bench::BenchArgs {
  std::vector<int> warm = {2048, 8192, 32768, 131072}, bits = {2, 4, 8};
  int splits = 0;  // 0: PlanAkvAttentionSplits
};

// Query, its position, outputs and the split workspace (sized for the most splits).
struct Io {
  __nv_bfloat16 *q = nullptr, *out = nullptr;
  int32_t* q_pos = nullptr;
  float *lse = nullptr, *po = nullptr, *pl = nullptr;
};

AkvAttentionParams Params(const AkvSet& s, const Io& io, int layer, int splits, AkvAttnPath path) {
  AkvAttentionParams p;
  p.layout = s.layout(), p.tiers = s.tiers(), p.layer = layer;
  p.q = io.q, p.q_pos = io.q_pos, p.out = io.out, p.lse = io.lse;  // lse: the engine's score update reads it
  p.partial_out = splits > 1 ? io.po : nullptr, p.partial_lse = splits > 1 ? io.pl : nullptr;
  p.num_rows = 1, p.num_heads = kHq, p.num_splits = splits;
  p.scale = 1.0f / std::sqrt(float(kD)), p.path = path;
  return p;
}

// True when the launcher refused `path` (the tensor-core kernel not built);
// any other error exits.
bool Refused(cudaError_t e, AkvAttnPath path) {
  if (e == cudaErrorInvalidValue && path == AkvAttnPath::kTensorCore) {
    (void)cudaGetLastError();  // the launcher may have recorded it: clear it
    return true;
  }
  BENCH_CHECK(e);
  return false;
}

// Layer 0 through `path` into io.out, poisoned first (0xffff is a bf16 NaN,
// so an output the kernel skipped shows); false when the path is refused.
bool RunOnce(const AkvSet& s, const Io& io, int splits, AkvAttnPath path, std::vector<float>* out) {
  std::vector<__nv_bfloat16> h(kHq * kD);
  BENCH_CHECK(cudaMemset(io.out, 0xff, h.size() * 2));
  if (Refused(LaunchAkvMixedAttention(Params(s, io, 0, splits, path), nullptr), path)) return false;
  BENCH_CHECK(cudaDeviceSynchronize());
  BENCH_CHECK(cudaMemcpy(h.data(), io.out, h.size() * 2, cudaMemcpyDeviceToHost));
  out->resize(h.size());
  for (size_t i = 0; i < h.size(); ++i) (*out)[i] = __bfloat162float(h[i]);
  return true;
}

// The guard of step 2: max |tc - cc| / max |cc| (a non-finite output fails),
// -1 when the tensor-core path is refused.
double CheckBits(int bits, const Io& io, int num_sms) {
  const AkvSet s(bits, kCheckWarm, 1);
  const int splits = PlanAkvAttentionSplits(1, kHq, kHkv, kNHot + kCheckWarm, num_sms);
  std::vector<float> cc, tc;
  RunOnce(s, io, splits, AkvAttnPath::kCudaCore, &cc);
  for (const float x : cc) {
    if (!std::isfinite(x)) {
      std::fprintf(stderr, "FAIL: CUDA-core output not finite at b=%d\n", bits);
      std::exit(1);
    }
  }
  if (!RunOnce(s, io, splits, AkvAttnPath::kTensorCore, &tc)) return -1;
  double diff = 0, ref = 0;
  for (size_t i = 0; i < cc.size(); ++i) {
    if (!std::isfinite(tc[i])) return INFINITY;
    diff = std::max(diff, double(std::fabs(tc[i] - cc[i])));
    ref = std::max(ref, double(std::fabs(cc[i])));
  }
  return ref > 0 ? diff / ref : (diff > 0 ? INFINITY : 0.0);
}

struct Row {
  int bits, n_warm, layers, splits, dense_splits;
  double cc_us, tc_us, bytes, dense_us, dense_bytes;  // tc_us < 0: path refused (n/a)
};

Args Parse(int argc, char** argv) {
  Args a;
  bench::ParseBenchArgs(argc, argv, &a, [&](const std::string& s, auto next) {
    if (s == "--warm") a.warm = bench::ParseIntList(s, next(), 1, 1 << 22);
    else if (s == "--bits") a.bits = AkvBitsList(s, next());
    else if (s == "--splits") a.splits = std::clamp(std::atoi(next().c_str()), 0, kAkvAttnMaxSplits);
    else return false;
    return true;
  });
  return a;
}

double Gbps(double bytes, double us) { return bytes / (us * 1e-6) / 1e9; }

// A JSON number, or null for "not measured" (negative).
std::string Num(double v, int prec = 2) {
  if (!(v >= 0) || !std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = Parse(argc, argv);
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  const double copy = CopyGbps();
  std::printf("device %s, %d SMs, L2 %d MiB; copy %.0f GB/s; AKV Hq %d Hkv %d D %d g %d, n_hot %d, bf16\n",
              prop.name, sms, prop.l2CacheSize >> 20, copy, kHq, kHkv, kD, kGroup, kNHot);

  Io io;
  const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(1, kHq, kAkvAttnMaxSplits, kD);
  DevAlloc(&io.q, kHq * kD * 2), DevAlloc(&io.out, kHq * kD * 2), DevAlloc(&io.q_pos, 4), DevAlloc(&io.lse, kHq * 4);
  DevAlloc(&io.po, ws.partial_out), DevAlloc(&io.pl, ws.partial_lse);
  FillRandomBf16<<<8, 256>>>(io.q, kHq * kD, 7);
  BENCH_CHECK(cudaGetLastError());

  std::vector<std::pair<int, double>> checks;  // (bits, rel err; -1 = n/a)
  for (const int bits : a.bits) {
    const int qpos = kNHot + kCheckWarm;
    BENCH_CHECK(cudaMemcpy(io.q_pos, &qpos, 4, cudaMemcpyHostToDevice));
    const double err = CheckBits(bits, io, sms);
    checks.emplace_back(bits, err);
    if (err < 0) {
      std::printf("check b=%d n_warm=%d: tensor-core path n/a (launcher refused it)\n", bits, kCheckWarm);
      continue;
    }
    std::printf("check b=%d n_warm=%d: tensor-core vs CUDA-core max rel err %.3e (limit %.0e)\n", bits, kCheckWarm,
                err, kCheckTol);
    if (!(err <= kCheckTol)) {
      std::fprintf(stderr, "FAIL: tensor-core output differs from CUDA-core output at b=%d\n", bits);
      return 1;
    }
  }

  std::vector<Row> rows;
  for (const int n_warm : a.warm) {
    const int tokens = kNHot + n_warm;
    int dense_splits = 1;
    const double dense_us = DenseUs(a, 1, tokens, prop, &dense_splits);
    BENCH_CHECK(cudaMemcpy(io.q_pos, &tokens, 4, cudaMemcpyHostToDevice));  // q_pos = n_hot + n_warm
    for (const int bits : a.bits) {
      const double read = AkvStepBytes(bits, n_warm), alloc = read + 12.0 * tokens;  // + score arrays
      const int want = static_cast<int>(std::max(2.0, std::ceil(4.0 * prop.l2CacheSize / read)));
      const int layers = std::max(1, std::min(want, static_cast<int>(kMemBudget / alloc)));
      const AkvSet s(bits, n_warm, layers);
      Row r{};
      r.bits = bits, r.n_warm = n_warm, r.layers = layers, r.bytes = read;
      r.dense_splits = dense_splits, r.dense_us = dense_us, r.dense_bytes = DenseStepBytes(tokens);
      r.splits = a.splits > 0 ? a.splits : PlanAkvAttentionSplits(1, kHq, kHkv, tokens, sms);
      auto time_path = [&](AkvAttnPath path) -> double {
        if (Refused(LaunchAkvMixedAttention(Params(s, io, 0, r.splits, path), nullptr), path)) return -1;
        return MedianUs(a, [&](int i) {
          return LaunchAkvMixedAttention(Params(s, io, i % layers, r.splits, path), nullptr);
        });
      };
      r.cc_us = time_path(AkvAttnPath::kCudaCore);
      r.tc_us = time_path(AkvAttnPath::kTensorCore);
      rows.push_back(r);
      std::printf("b=%d n_warm=%d: %d layers, S=%d (dense S=%d): cuda-core %.1f us, tensor-core %s us, dense %.1f us\n",
                  bits, n_warm, layers, r.splits, dense_splits, r.cc_us, r.tc_us < 0 ? "n/a" : Num(r.tc_us, 1).c_str(),
                  dense_us);
    }
  }

  std::printf("\n%4s %7s %-11s %4s %9s %8s %7s %7s | %9s %7s | %6s\n", "bits", "n_warm", "path", "S", "us", "MB/step",
              "GB/s", "%copy", "dense_us", "xdense", "tc/cc");
  for (const Row& r : rows) {
    for (const bool tc : {false, true}) {
      const double us = tc ? r.tc_us : r.cc_us;
      const char* name = tc ? "tensor-core" : "cuda-core";
      if (us < 0) {
        std::printf("%4d %7d %-11s %4d %9s %8.2f %7s %7s | %9.1f %7s | %6s\n", r.bits, r.n_warm, name, r.splits, "n/a",
                    r.bytes / 1e6, "-", "-", r.dense_us, "-", "-");
        continue;
      }
      const std::string ratio = tc ? Num(r.cc_us / r.tc_us) + "x" : "-";
      std::printf("%4d %7d %-11s %4d %9.1f %8.2f %7.0f %6.1f%% | %9.1f %6.2fx | %6s\n", r.bits, r.n_warm, name,
                  r.splits, us, r.bytes / 1e6, Gbps(r.bytes, us), 100 * Gbps(r.bytes, us) / copy, r.dense_us,
                  r.dense_us / us, ratio.c_str());
    }
  }
  std::printf("(us: medians of %d launches; MB/step by akv.md §7; %%copy of %.0f GB/s; acceptance: >= 70%% at "
              "n_warm >= 8192)\n", a.iters, copy);
  for (const Row& r : rows) {
    std::printf("bytes read b=%d n_warm=%d: dense %.2f MB (%.1f us, %.1f%% of copy), akv %.2f MB: dense/akv %.2fx\n",
                r.bits, r.n_warm, r.dense_bytes / 1e6, r.dense_us, 100 * Gbps(r.dense_bytes, r.dense_us) / copy,
                r.bytes / 1e6, r.dense_bytes / r.bytes);
  }

  if (!a.out.empty()) {
    FILE* f = std::fopen(a.out.c_str(), "w");
    if (f == nullptr) { std::fprintf(stderr, "cannot write %s\n", a.out.c_str()); return 1; }
    std::fprintf(f, "{\n  \"bench\": \"akv_attention\",\n  \"commit\": \"%s\",\n  \"device\": \"%s\",\n",
                 a.commit.c_str(), prop.name);
    std::fprintf(f, "  \"copy_bandwidth_gbps\": %.1f,\n  \"num_sms\": %d,\n  \"l2_bytes\": %d,\n", copy, sms,
                 prop.l2CacheSize);
    std::fprintf(f, "  \"iters\": %d,\n  \"warmup\": %d,\n  \"statistic\": \"median\",\n", a.iters, a.warmup);
    std::fprintf(f, "  \"bytes_model\": \"akv.md 7: n_hot*2*Hkv*D*2 + n_warm*2*Hkv*(D*b/8 + 4*D/g) + "
                 "4*(n_hot + n_warm) + 2*Hq*D*2; dense: 2*T*Hkv*D*2 + 2*Hq*D*2\",\n");
    std::fprintf(f, "  \"acceptance\": \"gbps >= 0.7 * copy_bandwidth_gbps at n_warm >= 8192\",\n  \"checks\": [");
    for (size_t i = 0; i < checks.size(); ++i) {
      std::fprintf(f, "%s{\"bits\": %d, \"n_warm\": %d, \"tc_vs_cc_max_rel_err\": %s}", i ? ", " : "",
                   checks[i].first, kCheckWarm, Num(checks[i].second, 8).c_str());
    }
    std::fprintf(f, "],\n  \"points\": [\n");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      for (const bool tc : {false, true}) {
        const double us = tc ? r.tc_us : r.cc_us;  // < 0 (n/a): Num writes null
        std::fprintf(f, "    {\"bits\": %d, \"n_hot\": %d, \"n_warm\": %d, \"tokens\": %d, \"Hq\": %d, \"Hkv\": %d, "
                     "\"D\": %d, \"group_size\": %d, \"dtype\": \"bf16\", \"path\": \"%s\", \"available\": %s, "
                     "\"splits\": %d, \"layers\": %d, \"time_us\": %s, \"bytes\": %.0f, \"mb_per_step\": %.3f, "
                     "\"gbps\": %s, \"pct_of_copy\": %s, \"dense_splits\": %d, \"dense_time_us\": %.2f, "
                     "\"dense_bytes\": %.0f, \"dense_gbps\": %.1f, \"dense_pct_of_copy\": %.1f, "
                     "\"speedup_vs_dense\": %s, \"bytes_ratio_dense_over_akv\": %.3f, \"tc_over_cc_speedup\": %s}%s\n",
                     r.bits, kNHot, r.n_warm, kNHot + r.n_warm, kHq, kHkv, kD, kGroup, tc ? "tensor_core" : "cuda_core",
                     us >= 0 ? "true" : "false", r.splits, r.layers, Num(us).c_str(), r.bytes, r.bytes / 1e6,
                     Num(Gbps(r.bytes, us), 1).c_str(), Num(100 * Gbps(r.bytes, us) / copy, 1).c_str(),
                     r.dense_splits, r.dense_us, r.dense_bytes, Gbps(r.dense_bytes, r.dense_us),
                     100 * Gbps(r.dense_bytes, r.dense_us) / copy, Num(r.dense_us / us, 3).c_str(),
                     r.dense_bytes / r.bytes, Num(r.cc_us / r.tc_us, 3).c_str(), i + 1 < rows.size() || !tc ? "," : "");
      }
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("wrote %s\n", a.out.c_str());
  }
  cudaFree(io.q), cudaFree(io.out), cudaFree(io.q_pos), cudaFree(io.lse), cudaFree(io.po), cudaFree(io.pl);
  return 0;
}
