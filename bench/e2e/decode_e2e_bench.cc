// End-to-end decode throughput of the engine (all layers, attention over the
// dense paged cache, sampling, CUDA graphs) at (batch, context) points, with
// the roofline beside it: the bytes one decode step must read (weights less
// the embedding table, of which a step reads B rows, plus every sequence's
// K/V) over the measured device copy bandwidth. Prints a table and writes
// JSON; the PyTorch baseline (bench/e2e/gpt_fast_baseline.py) runs the same
// points in the same session and bench/e2e/combine.py puts them side by side.
//
//   build/decode_e2e_bench --synthetic=llama3-8b --points=1x1024,1x32768,8x8192 \
//       --decode-tokens=64 --json=e2e.json
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/runtime/engine.h"
#include "tools/argv_dashes.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_profiler_api.h>
#endif

ABSL_FLAG(std::string, synthetic, "llama3-8b", "architecture with seeded random weights ('' = --model)");
ABSL_FLAG(std::string, model, "", "GGUF file or Hugging Face folder (when --synthetic is empty)");
ABSL_FLAG(std::string, device, "auto", "auto | cpu | cuda");
ABSL_FLAG(std::string, points, "1x1024,1x32768,8x8192", "comma-separated BxT: batch x context tokens");
ABSL_FLAG(int32_t, decode_tokens, 64, "timed decode steps per point");
ABSL_FLAG(int32_t, warmup_tokens, 4, "decode steps before timing (graph capture happens here)");
ABSL_FLAG(int64_t, kv_pool_bytes, 0, "paged KV pool bytes (0 = what fits)");
ABSL_FLAG(std::string, json, "", "write results here");
ABSL_FLAG(bool, paged_dense, false, "CPU: dense through the paged pool and the decode kernel's twin");
ABSL_FLAG(std::string, commit, "", "commit of the build, recorded in the JSON");
ABSL_FLAG(int32_t, tensor_parallel, 1, "model shards, one GPU each (bytes and roofline are per GPU)");
ABSL_FLAG(std::string, strategies, "dense",
          "KV strategies to run at every point, side by side (e.g. dense,akv); ratios are to dense");
ABSL_FLAG(std::string, kv, "", "knobs name=value,... for every strategy but dense (e.g. hot_budget=1024)");
ABSL_FLAG(int32_t, profile_steps, 0,
          "open the CUDA profiler (ncu --profile-from-start off) over the last N timed steps of every point, "
          "so a kernel breakdown leaves out prefill and warm-up");

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;

void Sync(const c10::Device& d) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (d.is_cuda()) c10::cuda::device_synchronize();
#endif
}

// cudaProfilerStart/Stop around a window of steps (--profile_steps); a no-op
// on CPU builds. The token callback runs after a step's tokens are read, so
// with run-ahead the window opens about a step late: ask for a step more.
void Profiler(const c10::Device& d, bool on) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (d.is_cuda()) (void)(on ? cudaProfilerStart() : cudaProfilerStop());
#endif
}

// Device-to-device copy bandwidth (read + write bytes per second), best of 5.
double CopyBandwidth(const c10::Device& device) {
  const int64_t n = (1ll << 30) / 2;  // 1 GiB of bf16
  auto opts = at::TensorOptions().device(device).dtype(at::kBFloat16);
  at::Tensor a = at::ones({n}, opts), b = at::empty({n}, opts);
  double best = 0;
  for (int i = 0; i < 6; ++i) {
    Sync(device);
    const auto t0 = Clock::now();
    b.copy_(a);
    Sync(device);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (i > 0) best = std::max(best, 2.0 * a.nbytes() / s);
  }
  return best;
}

struct Point {
  std::string strategy = "dense";
  int64_t batch = 0, context = 0;
  double tok_s = 0, step_ms = 0, roofline_ms = 0, bytes_per_step = 0, prefill_s = 0;
  double graph_gpu_ms = 0;  // mean GPU time of a replayed decode graph (0 without graphs)
  int64_t run_ahead_steps = 0;  // steps launched before the previous one's tokens were read
  std::string error;
};

Point RunPoint(Engine& e, const StrategyConfig& kv, int64_t B, int64_t T, int warmup, int decode, double copy_bw,
               int profile_steps) {
  Point p;
  p.strategy = kv.strategy;
  p.batch = B;
  p.context = T;
  // Per GPU: under tensor parallelism rank 0's shard (its KV heads, its weights).
  const ModelConfig& c = e.model().config();
  const double kv_token_bytes = 2.0 * c.n_layers * c.n_kv_heads * c.head_dim * 2;  // bf16
  const double need = static_cast<double>(B) * (T + warmup + decode + 16) * kv_token_bytes;
  if (kv.strategy == "dense" && e.kv_pool_bytes() > 0 && need > static_cast<double>(e.kv_pool_bytes())) {
    p.error = "does not fit: KV needs " + std::to_string(need / 1e9) + " GB, pool holds " +
              std::to_string(e.kv_pool_bytes() / 1e9) + " GB";
    return p;
  }
  std::mt19937 rng(static_cast<uint32_t>(B * 1000003 + T));
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(c.vocab_size) - 1);
  std::vector<GenerateSpec> specs(static_cast<size_t>(B));
  for (GenerateSpec& s : specs) {
    s.prompt_ids.resize(static_cast<size_t>(T));
    for (int32_t& t : s.prompt_ids) t = id(rng);
    s.sampling.temperature = 0;
    s.sampling.max_new_tokens = warmup + decode + 1;
    s.sampling.ignore_eos = true;
    s.kv = kv;
  }
  // Every sequence decodes in lockstep: time the steps through request 0.
  std::vector<Clock::time_point> stamps;
  const int64_t replays0 = e.model().decode_graph_replays();
  const double gpu_ms0 = e.model().decode_graph_gpu_ms();
  const int64_t ahead0 = e.run_ahead_steps();
  const auto t0 = Clock::now();
  const size_t profile_from = static_cast<size_t>(warmup + decode - std::min(profile_steps, decode));
  bool profiling = false;
  auto r = e.GenerateBatch(specs, [&](size_t i, const StreamDelta& d) {
    if (i != 0 || d.tokens.empty()) return;
    stamps.push_back(Clock::now());
    if (profile_steps > 0 && !profiling && stamps.size() == profile_from) {
      profiling = true;
      Profiler(e.model().device(), true);
    }
  });
  if (profiling) Profiler(e.model().device(), false);
  if (!r.ok()) {
    p.error = std::string(r.status().message());
    std::replace(p.error.begin(), p.error.end(), '"', '\'');
    return p;
  }
  if (static_cast<int>(stamps.size()) < warmup + decode + 1) {
    p.error = "fewer steps than asked";
    return p;
  }
  p.prefill_s = std::chrono::duration<double>(stamps[0] - t0).count();
  const double dt = std::chrono::duration<double>(stamps[warmup + decode] - stamps[warmup]).count();
  p.step_ms = dt * 1e3 / decode;
  // Mean over every replay of the point (warm-up steps included). step_ms -
  // graph_gpu_ms ~ the host's time between two replays plus the step's uploads.
  if (const int64_t n = e.model().decode_graph_replays() - replays0; n > 0) {
    p.graph_gpu_ms = (e.model().decode_graph_gpu_ms() - gpu_ms0) / static_cast<double>(n);
  }
  p.run_ahead_steps = e.run_ahead_steps() - ahead0;
  p.tok_s = static_cast<double>(B) * decode / dt;
  const double mean_len = static_cast<double>(T) + warmup + decode / 2.0;
  p.bytes_per_step = static_cast<double>(e.model().decode_weight_bytes()) + B * mean_len * kv_token_bytes;
  p.roofline_ms = p.bytes_per_step / copy_bw * 1e3;
  return p;
}

}  // namespace
}  // namespace kvstream

// The GPU's name for the JSON ("cpu" without one): results name the machine.
static std::string GpuName() {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (at::hasCUDA()) return at::cuda::getCurrentDeviceProperties()->name;
#endif
  return "cpu";
}

int main(int argc, char** argv) {
  using namespace kvstream;
  DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  EngineOptions o;
  o.synthetic = absl::GetFlag(FLAGS_synthetic);
  o.model_path = absl::GetFlag(FLAGS_model);
  o.device = absl::GetFlag(FLAGS_device);
  o.kv_pool_bytes = absl::GetFlag(FLAGS_kv_pool_bytes);
  o.tensor_parallel = absl::GetFlag(FLAGS_tensor_parallel);
  o.paged_dense = absl::GetFlag(FLAGS_paged_dense);
  std::fprintf(stderr, "[e2e] loading %s ...\n", o.synthetic.empty() ? o.model_path.c_str() : o.synthetic.c_str());
  auto engine = Engine::Load(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  Engine& e = **engine;
  const c10::Device device = e.model().device();
  const double bw = CopyBandwidth(device);
  std::fprintf(stderr, "[e2e] %s on %s, weights %.2f GB (%.2f GB read per step), copy bandwidth %.0f GB/s, KV pool %.1f GB\n",
               e.config().name.c_str(), e.device_name().c_str(), e.model().weight_bytes() / 1e9,
               e.model().decode_weight_bytes() / 1e9, bw / 1e9, e.kv_pool_bytes() / 1e9);
  std::vector<StrategyConfig> strategies;
  const std::vector<std::string> names = absl::StrSplit(absl::GetFlag(FLAGS_strategies), ',', absl::SkipEmpty());
  for (const std::string& name : names) {
    StrategyConfig c;
    c.strategy = name;
    if (name != "dense" && !absl::GetFlag(FLAGS_kv).empty()) {
      auto knobs = ParseKnobList(absl::GetFlag(FLAGS_kv));
      if (!knobs.ok()) {
        std::fprintf(stderr, "error: --kv: %s\n", knobs.status().ToString().c_str());
        return 2;
      }
      c.knobs = *knobs;
    }
    strategies.push_back(std::move(c));
  }
  std::vector<Point> points;
  const std::vector<std::string> specs = absl::StrSplit(absl::GetFlag(FLAGS_points), ',', absl::SkipEmpty());
  for (const std::string& spec : specs) {
    std::vector<std::string> bt = absl::StrSplit(spec, 'x');
    int64_t B = 0, T = 0;
    if (bt.size() != 2 || !absl::SimpleAtoi(bt[0], &B) || !absl::SimpleAtoi(bt[1], &T) || B < 1 || T < 1) {
      std::fprintf(stderr, "error: --points: '%s' is not BxT\n", spec.c_str());
      return 2;
    }
    for (const StrategyConfig& kv : strategies) {
      std::fprintf(stderr, "[e2e] point %zu/%zu: %s B=%lld T=%lld ...\n", points.size() + 1,
                   specs.size() * strategies.size(), kv.strategy.c_str(), static_cast<long long>(B),
                   static_cast<long long>(T));
      points.push_back(
          RunPoint(e, kv, B, T, absl::GetFlag(FLAGS_warmup_tokens), absl::GetFlag(FLAGS_decode_tokens), bw,
                   absl::GetFlag(FLAGS_profile_steps)));
    }
  }
  // Roofline = dense's bytes (weights + a dense bf16 cache); a compressed
  // strategy reads fewer KV bytes, so its "% roofline" can pass 100%.
  std::printf("\n%-8s %6s %8s | %10s %10s %12s %10s %9s | %9s %s\n", "strategy", "B", "T", "tok/s", "step ms",
              "roofline ms", "% roofline", "vs dense", "graph ms", "prefill s");
  double dense_tok_s = 0;
  for (const Point& p : points) {
    if (p.strategy == "dense") dense_tok_s = p.error.empty() ? p.tok_s : 0;
    if (!p.error.empty()) {
      std::printf("%-8s %6lld %8lld | error: %s\n", p.strategy.c_str(), static_cast<long long>(p.batch),
                  static_cast<long long>(p.context), p.error.c_str());
      continue;
    }
    std::printf("%-8s %6lld %8lld | %10.1f %10.3f %12.3f %9.1f%% %8.2fx | %9.3f %.1f\n", p.strategy.c_str(),
                static_cast<long long>(p.batch), static_cast<long long>(p.context), p.tok_s, p.step_ms, p.roofline_ms,
                100 * p.roofline_ms / p.step_ms, dense_tok_s > 0 ? p.tok_s / dense_tok_s : 0.0, p.graph_gpu_ms,
                p.prefill_s);
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream f(path);
    f << "{\"bench\": \"decode_e2e\", \"engine\": \"kvstream\", \"commit\": \"" << absl::GetFlag(FLAGS_commit)
      << "\", \"model\": \"" << e.config().name
      << "\", \"device\": \"" << e.device_name() << "\", \"gpu\": \"" << GpuName() << "\", \"dtype\": \""
      << e.dtype_name()
      << "\", \"copy_bandwidth_bytes_s\": " << bw << ", \"weight_bytes_read_per_step\": "
      << e.model().decode_weight_bytes() << ", \"decode_tokens\": " << absl::GetFlag(FLAGS_decode_tokens)
      << ", \"tensor_parallel\": " << absl::GetFlag(FLAGS_tensor_parallel)
      << ", \"points\": [";
    for (size_t i = 0; i < points.size(); ++i) {
      const Point& p = points[i];
      f << (i ? ", " : "") << "{\"strategy\": \"" << p.strategy << "\", \"batch\": " << p.batch
        << ", \"context\": " << p.context;
      if (!p.error.empty()) {
        f << ", \"error\": \"" << p.error << "\"}";
        continue;
      }
      f << ", \"tok_s\": " << p.tok_s << ", \"step_ms\": " << p.step_ms << ", \"roofline_ms\": " << p.roofline_ms
        << ", \"roofline_fraction\": " << p.roofline_ms / p.step_ms << ", \"bytes_per_step\": " << p.bytes_per_step
        << ", \"graph_gpu_ms\": " << p.graph_gpu_ms << ", \"run_ahead_steps\": " << p.run_ahead_steps
        << ", \"prefill_s\": " << p.prefill_s << "}";
    }
    f << "]}\n";
  }
  return 0;
}
