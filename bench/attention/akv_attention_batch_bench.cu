// AKV decode attention for a batch as the engine serves it: every sequence
// has tiers of its own. Two ways, both captured in a CUDA graph as the
// decode step is (one replay = one layer of a step), with the engine's split
// plans (--splits adds fixed split counts to compare):
//   fanout   B launch chains (mixed attention + split merge), chain b on side
//            stream b % 8 forked from and joined back to the step's stream
//            (engine/kv/side_streams.h), splits planned for min(B, 8)
//            sequences side by side;
//   batched  one launch over the B rows, each reading its own tiers through
//            its descriptor (AkvAttnBatch; engine/kv/akv/akv_strategy.cc
//            ForwardGroup), one merge; splits planned for B side by side.
// Beside them, in the same run: the dense paged decode kernel on the same
// (B, n_hot + n_warm) tokens in one launch.
// Issue acceptance (AKV): bytes read per step / time >= 70% of the measured
// copy bandwidth at n_warm >= 8K (--batch 1 gives the one-sequence figure,
// which the engine serves through the fanout path's single chain).
//
//   akv_attention_batch_bench [--out results.json] [--commit SHA] [--iters 100] [--warmup 10]
//                             [--batch 8,32] [--warm 8192,32768] [--bits 4] [--splits 0,144]
//                             [--launch fanout,batched] [--hot 1024] [--timer replay,step]
//   --splits: split counts per sequence to time, 0 = the engine's plan (default: 0 only)
//   --hot:    hot-tier rows per sequence (bf16), default 1024
//   --timer:  replay = one graph replay per layer between CUDA events (graph
//             launch latency included); step = a graph of 32 layers back to
//             back, per layer (as the engine's decode-step graph runs them,
//             each kernel right after the one before); dense the same way
//
// Bytes per step: B x akv.md §7 (akv_bench_tiers.cuh AkvStepBytes); the tiers
// of L layers per sequence, L such that a replay's rows are not in L2 from the
// replay before (the stack spans >= 4x L2); replay i reads layer i % L.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/attention/akv_bench_tiers.cuh"
#include "bench/attention/bench_common.cuh"
#include "kernels/akv/akv_attention.h"

namespace {

using namespace kvstream;             // NOLINT: bench-local
using namespace kvstream::akv_bench;  // NOLINT: the shared tiers, shape and dense timer

struct Args : bench::BenchArgs {
  std::vector<int> batch = {8, 32}, warm = {8192, 32768}, bits = {4}, splits = {0}, hot = {kNHot};
  std::vector<std::string> launch = {"fanout", "batched"}, timer = {"replay"};
};

// The engine's AKV side streams (engine/kv/akv/akv_strategy.h: SideStreams side_{8}).
constexpr int kSideStreams = 8;

// One sequence's query, position, outputs and split workspace.
struct SeqIo {
  __nv_bfloat16 *q = nullptr, *out = nullptr;
  int32_t* q_pos = nullptr;
  float *lse = nullptr, *po = nullptr, *pl = nullptr;
  SeqIo(int tokens, int splits, uint32_t seed) {
    const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(1, kHq, splits, kD);
    DevAlloc(&q, kHq * kD * 2), DevAlloc(&out, kHq * kD * 2), DevAlloc(&q_pos, 4), DevAlloc(&lse, kHq * 4);
    DevAlloc(&po, std::max<size_t>(ws.partial_out, 16)), DevAlloc(&pl, std::max<size_t>(ws.partial_lse, 16));
    FillRandomBf16<<<8, 256>>>(q, kHq * kD, seed);
    BENCH_CHECK(cudaMemcpy(q_pos, &tokens, 4, cudaMemcpyHostToDevice));  // q_pos = n_hot + n_warm: all attended
  }
  ~SeqIo() { cudaFree(q), cudaFree(out), cudaFree(q_pos), cudaFree(lse), cudaFree(po), cudaFree(pl); }
};

// The batch's q, positions, outputs and split workspace as one launch sees them ([B, ...] arrays).
struct BatchIo {
  __nv_bfloat16 *q = nullptr, *out = nullptr;
  float *lse = nullptr, *po = nullptr, *pl = nullptr;
  AkvAttnSeq* rows = nullptr;  // [layers, B] descriptors
  BatchIo(int B, int splits, int layers, const std::vector<std::unique_ptr<AkvSet>>& sets,
          const std::vector<std::unique_ptr<SeqIo>>& io) {
    const AkvAttentionWorkspaceBytes ws = AkvAttentionWorkspace(B, kHq, splits, kD);
    DevAlloc(&q, size_t(B) * kHq * kD * 2), DevAlloc(&out, size_t(B) * kHq * kD * 2), DevAlloc(&lse, B * kHq * 4);
    DevAlloc(&po, std::max<size_t>(ws.partial_out, 16)), DevAlloc(&pl, std::max<size_t>(ws.partial_lse, 16));
    FillRandomBf16<<<64, 256>>>(q, B * kHq * kD, 99);
    std::vector<AkvAttnSeq> host;
    for (int l = 0; l < layers; ++l) {
      for (int b = 0; b < B; ++b) {
        const AkvLayout lay = sets[b]->layout();
        host.push_back(AkvAttnSeq{AkvTiersAtLayer(sets[b]->tiers(), lay, l), io[b]->q_pos, lay.hot_capacity,
                                  lay.warm_capacity});
      }
    }
    DevAlloc(&rows, host.size() * sizeof(AkvAttnSeq));
    BENCH_CHECK(cudaMemcpy(rows, host.data(), host.size() * sizeof(AkvAttnSeq), cudaMemcpyHostToDevice));
  }
  ~BatchIo() { cudaFree(q), cudaFree(out), cudaFree(lse), cudaFree(po), cudaFree(pl), cudaFree(rows); }
};

// replay: median us of one graph replay, graph l holding what enqueue(l,
// stream) launches (layer l of every sequence), replays cycling over the
// layers. step: median us per layer of one graph holding kStepLayers layers
// back to back (cycling over the stacked ones), as the engine's decode-step
// graph runs them.
template <class Enqueue>
double TimeLayerGraphs(const Args& a, int layers, bool step, Enqueue enqueue) {
  if (step) {
    const int n = layers * ((bench::kStepLayers + layers - 1) / layers);
    return bench::StepUs(a, n, [&](int i, cudaStream_t s) {
      enqueue(i % layers, s);
      return cudaSuccess;
    });
  }
  cudaStream_t main = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&main, cudaStreamNonBlocking));
  std::vector<cudaGraphExec_t> exec(layers);
  for (int l = 0; l < layers; ++l) {
    BENCH_CHECK(cudaStreamBeginCapture(main, cudaStreamCaptureModeThreadLocal));
    enqueue(l, main);
    cudaGraph_t g = nullptr;
    BENCH_CHECK(cudaStreamEndCapture(main, &g));
    BENCH_CHECK(cudaGraphInstantiate(&exec[l], g, 0));
    BENCH_CHECK(cudaGraphDestroy(g));
  }
  const double us = MedianUs(a, [&](int i) { return cudaGraphLaunch(exec[i % layers], nullptr); });
  for (cudaGraphExec_t e : exec) cudaGraphExecDestroy(e);
  cudaStreamDestroy(main);
  return us;
}

// One batched launch (rows in chunks of kAkvAttnMaxBatch) over the B sequences' layer l.
double TimeBatched(const Args& a, const std::vector<std::unique_ptr<AkvSet>>& sets, const BatchIo& io, int layers,
                   int splits, bool step) {
  const int B = static_cast<int>(sets.size());
  return TimeLayerGraphs(a, layers, step, [&](int l, cudaStream_t main) {
    for (int b0 = 0; b0 < B; b0 += kAkvAttnMaxBatch) {
      const int n = std::min(B - b0, kAkvAttnMaxBatch);
      AkvAttnBatch batch;
      for (int i = 0; i < n; ++i) batch.seq[i] = io.rows + size_t(l) * B + b0 + i;
      AkvAttentionParams p;
      p.layout = sets[0]->layout();  // every set has the same capacities here
      p.batch = &batch;
      p.q = io.q + size_t(b0) * kHq * kD, p.out = io.out + size_t(b0) * kHq * kD, p.lse = io.lse + b0 * kHq;
      p.partial_out = splits > 1 ? io.po + size_t(b0) * kHq * splits * kD : nullptr;
      p.partial_lse = splits > 1 ? io.pl + size_t(b0) * kHq * splits : nullptr;
      p.num_rows = n, p.num_heads = kHq, p.num_splits = splits, p.scale = 1.0f / std::sqrt(float(kD));
      BENCH_CHECK(LaunchAkvMixedAttention(p, main));
    }
  });
}

struct Row {
  int batch, bits, n_hot, n_warm, layers, splits, dense_splits;
  bool planned;  // splits from the engine's planner (else --splits)
  double us, bytes, dense_us, dense_bytes;
  std::string launch, timer;
};

// B chains (attention + merge of layer l) fanned out over min(B, 8) side streams.
double TimeFanOut(const Args& a, const std::vector<std::unique_ptr<AkvSet>>& sets,
                  const std::vector<std::unique_ptr<SeqIo>>& io, int layers, int splits, bool step) {
  const int B = static_cast<int>(sets.size());
  const int streams = std::min(B, kSideStreams);
  std::vector<cudaStream_t> side(streams);
  std::vector<cudaEvent_t> join(streams);
  cudaEvent_t fork = nullptr;
  BENCH_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  for (int i = 0; i < streams; ++i) {
    BENCH_CHECK(cudaStreamCreateWithFlags(&side[i], cudaStreamNonBlocking));
    BENCH_CHECK(cudaEventCreateWithFlags(&join[i], cudaEventDisableTiming));
  }
  const double us = TimeLayerGraphs(a, layers, step, [&](int l, cudaStream_t main) {
    BENCH_CHECK(cudaEventRecord(fork, main));
    for (int i = 0; i < streams; ++i) BENCH_CHECK(cudaStreamWaitEvent(side[i], fork, 0));
    for (int b = 0; b < B; ++b) {
      AkvAttentionParams p;
      p.layout = sets[b]->layout(), p.tiers = sets[b]->tiers(), p.layer = l;
      p.q = io[b]->q, p.q_pos = io[b]->q_pos, p.out = io[b]->out, p.lse = io[b]->lse;
      p.partial_out = splits > 1 ? io[b]->po : nullptr, p.partial_lse = splits > 1 ? io[b]->pl : nullptr;
      p.num_rows = 1, p.num_heads = kHq, p.num_splits = splits, p.scale = 1.0f / std::sqrt(float(kD));
      BENCH_CHECK(LaunchAkvMixedAttention(p, side[b % streams]));
    }
    for (int i = 0; i < streams; ++i) {
      BENCH_CHECK(cudaEventRecord(join[i], side[i]));
      BENCH_CHECK(cudaStreamWaitEvent(main, join[i], 0));
    }
  });
  for (int i = 0; i < streams; ++i) cudaStreamDestroy(side[i]), cudaEventDestroy(join[i]);
  cudaEventDestroy(fork);
  return us;
}

double Gbps(double bytes, double us) { return bytes / (us * 1e-6) / 1e9; }

// A flag's comma-separated words, each one of `allowed` (a usage error otherwise).
std::vector<std::string> WordList(const std::string& flag, const std::string& v,
                                  const std::vector<std::string>& allowed) {
  std::vector<std::string> r;
  size_t b = 0;
  while (b <= v.size()) {
    const size_t e = std::min(v.find(',', b), v.size());
    const std::string w = v.substr(b, e - b);
    if (std::find(allowed.begin(), allowed.end(), w) == allowed.end()) {
      std::fprintf(stderr, "%s takes %s and/or %s, got '%s'\n", flag.c_str(), allowed[0].c_str(),
                   allowed[1].c_str(), w.c_str());
      std::exit(2);
    }
    r.push_back(w);
    b = e + 1;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  bench::ParseBenchArgs(argc, argv, &a, [&](const std::string& s, auto next) {
    if (s == "--batch") a.batch = bench::ParseIntList(s, next(), 1, 256);
    else if (s == "--warm") a.warm = bench::ParseIntList(s, next(), 1, 1 << 20);
    else if (s == "--hot") a.hot = bench::ParseIntList(s, next(), 16, 1 << 16);
    else if (s == "--bits") a.bits = AkvBitsList(s, next());
    else if (s == "--splits") a.splits = bench::ParseIntList(s, next(), 0, kAkvAttnMaxSplits);
    else if (s == "--launch") a.launch = WordList(s, next(), {"fanout", "batched"});
    else if (s == "--timer") a.timer = WordList(s, next(), {"replay", "step"});
    else return false;
    return true;
  });
  cudaDeviceProp prop{};
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  const double copy = bench::CopyGbps();
  std::printf("device %s, %d SMs; copy %.0f GB/s; AKV Hq %d Hkv %d D %d g %d, bf16 hot tier, B chains on "
              "min(B, %d) streams in a graph\n", prop.name, sms, copy, kHq, kHkv, kD, kGroup, kSideStreams);
  std::vector<Row> rows;
  for (const int B : a.batch) {
    for (const int n_hot : a.hot) {
      for (const int n_warm : a.warm) {
        const int tokens = n_hot + n_warm;
        std::vector<int> dense_splits(a.timer.size(), 1);
        std::vector<double> dense_us(a.timer.size());
        for (size_t ti = 0; ti < a.timer.size(); ++ti)
          dense_us[ti] = DenseUs(a, B, tokens, prop, &dense_splits[ti], a.timer[ti] == "step");
        for (const int bits : a.bits) {
          const double read = AkvStepBytes(bits, n_warm, n_hot), alloc = read + 12.0 * tokens;
          const int want = static_cast<int>(std::max(2.0, std::ceil(4.0 * prop.l2CacheSize / (B * read))));
          const int layers = std::max(1, std::min(want, static_cast<int>(kMemBudget / (B * alloc))));
          std::vector<std::unique_ptr<AkvSet>> sets;
          for (int b = 0; b < B; ++b) sets.push_back(std::make_unique<AkvSet>(bits, n_warm, layers, n_hot));
          for (const std::string& launch : a.launch) {
            const bool batched = launch == "batched";
            for (const int forced : a.splits) {
              // As the engine: the wave shared by the sequences that run at once.
              const int side_by_side = batched ? B : std::min(B, kSideStreams);
              const int splits =
                  forced > 0 ? forced : PlanAkvAttentionSplits(1, kHq, kHkv, tokens, sms, side_by_side, batched);
              std::vector<std::unique_ptr<SeqIo>> io;
              for (int b = 0; b < B; ++b) io.push_back(std::make_unique<SeqIo>(tokens, splits, 7 + b));
              for (size_t ti = 0; ti < a.timer.size(); ++ti) {
                const bool step = a.timer[ti] == "step";
                Row r{B, bits, n_hot, n_warm, layers, splits, dense_splits[ti], forced == 0, 0, B * read,
                      dense_us[ti], B * DenseStepBytes(tokens), launch, a.timer[ti]};
                if (batched) {
                  const BatchIo bio(B, splits, layers, sets, io);
                  r.us = TimeBatched(a, sets, bio, layers, splits, step);
                } else {
                  r.us = TimeFanOut(a, sets, io, layers, splits, step);
                }
                rows.push_back(r);
                std::printf("B=%d b=%d hot=%d warm=%d %s %s: %d layers, S=%d%s: %.1f us (%.1f%% of copy); "
                            "dense S=%d %.1f us\n", B, bits, n_hot, n_warm, launch.c_str(), r.timer.c_str(), layers,
                            splits, r.planned ? " (plan)" : "", r.us, 100 * Gbps(r.bytes, r.us) / copy,
                            r.dense_splits, r.dense_us);
              }
            }
          }
        }
      }
    }
  }
  std::printf("\n%4s %4s %5s %7s %8s %6s %5s %9s %8s %7s %7s | %9s %7s %7s\n", "B", "bits", "n_hot", "n_warm",
              "launch", "timer", "S", "us", "MB/step", "GB/s", "%copy", "dense_us", "%copy", "xdense");
  for (const Row& r : rows) {
    std::printf("%4d %4d %5d %7d %8s %6s %4d%c %9.1f %8.2f %7.0f %6.1f%% | %9.1f %6.1f%% %6.2fx\n", r.batch, r.bits,
                r.n_hot, r.n_warm, r.launch.c_str(), r.timer.c_str(), r.splits, r.planned ? '*' : ' ', r.us,
                r.bytes / 1e6, Gbps(r.bytes, r.us), 100 * Gbps(r.bytes, r.us) / copy, r.dense_us,
                100 * Gbps(r.dense_bytes, r.dense_us) / copy, r.dense_us / r.us);
  }
  std::printf("(us: replay = median of %d graph replays of one layer; step = median per layer of a graph of %d "
              "layers back to back; S*: the engine's plan; MB/step = B x akv.md §7; %%copy of %.0f GB/s; "
              "acceptance: >= 70%% at n_warm >= 8192)\n", a.iters, bench::kStepLayers, copy);
  if (a.out.empty()) return 0;
  FILE* f = std::fopen(a.out.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "cannot write %s\n", a.out.c_str());
    return 1;
  }
  std::fprintf(f, "{\n  \"bench\": \"akv_attention_batch\",\n  \"commit\": \"%s\",\n  \"device\": \"%s\",\n",
               a.commit.c_str(), prop.name);
  std::fprintf(f, "  \"copy_bandwidth_gbps\": %.1f,\n  \"num_sms\": %d,\n  \"iters\": %d,\n  \"warmup\": %d,\n", copy,
               sms, a.iters, a.warmup);
  std::fprintf(f, "  \"statistic\": \"timer replay: median of graph replays of one layer; timer step: median per "
               "layer of one graph of %d layers back to back (fanout: B attention + merge chains on min(B, %d) "
               "side streams; batched: one launch over the B rows + one merge; dense: one launch)\",\n",
               bench::kStepLayers, kSideStreams);
  std::fprintf(f, "  \"bytes_model\": \"B x (n_hot*2*Hkv*D*2 + n_warm*2*Hkv*(D*b/8 + 4*D/g) + 4*(n_hot + n_warm) + "
               "2*Hq*D*2); dense: B x (2*T*Hkv*D*2 + 2*Hq*D*2)\",\n  \"points\": [\n");
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    std::fprintf(f, "    {\"launch\": \"%s\", \"timer\": \"%s\", \"batch\": %d, \"bits\": %d, \"n_hot\": %d, \"n_warm\": %d, "
                 "\"Hq\": %d, \"Hkv\": %d, \"D\": %d, \"group_size\": %d, \"splits\": %d, \"splits_planned\": %s, "
                 "\"layers\": %d, \"time_us\": %.2f, \"bytes\": %.0f, "
                 "\"gbps\": %.1f, \"pct_of_copy\": %.1f, \"dense_splits\": %d, \"dense_time_us\": %.2f, "
                 "\"dense_bytes\": %.0f, \"dense_pct_of_copy\": %.1f, \"speedup_vs_dense\": %.3f}%s\n",
                 r.launch.c_str(), r.timer.c_str(), r.batch, r.bits, r.n_hot, r.n_warm, kHq, kHkv, kD, kGroup, r.splits,
                 r.planned ? "true" : "false", r.layers, r.us, r.bytes,
                 Gbps(r.bytes, r.us), 100 * Gbps(r.bytes, r.us) / copy, r.dense_splits, r.dense_us, r.dense_bytes,
                 100 * Gbps(r.dense_bytes, r.dense_us) / copy, r.dense_us / r.us, i + 1 < rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", a.out.c_str());
  return 0;
}
