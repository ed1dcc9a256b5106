// All-reduce time of a tensor-parallel decode step (issue 14): the NCCL sum
// of a [rows, hidden] bf16 tensor across the machine's GPUs (one rank
// thread and one communicator per GPU, as the engine runs them), eager (one
// launch per all-reduce) and replayed from a CUDA graph of 64 of them (one
// Llama-3-8B decode step: after o and after down in each of 32 layers).
// Prints a table and writes JSON; docs/scaling.md takes its per-layer cost
// from the graph column.
//
//   build/allreduce_bench --gpus=2 --shapes=1x4096,8x4096,32x4096,1x8192 --json=ar.json
#include <ATen/ATen.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/parallel/nccl_group.h"
#include "engine/parallel/tp_runner.h"
#include "engine/status_macros.h"
#include "tools/argv_dashes.h"

#if defined(KVSTREAM_HAVE_NCCL) && defined(KVSTREAM_HAVE_CUDA_TORCH)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

ABSL_FLAG(int32_t, gpus, 2, "ranks, one GPU each (cuda:0..gpus-1)");
ABSL_FLAG(std::string, shapes, "1x4096,8x4096,32x4096,1x8192,8x8192", "comma-separated rows x hidden (bf16)");
ABSL_FLAG(int32_t, iters, 2000, "eager all-reduces timed per shape");
ABSL_FLAG(int32_t, graph_ops, 64, "all-reduces captured in one graph (2 per layer x 32 layers)");
ABSL_FLAG(int32_t, replays, 50, "graph replays timed per shape");
ABSL_FLAG(std::string, commit, "", "recorded in the JSON");
ABSL_FLAG(std::string, json, "", "write results here");

namespace kvstream {
namespace {

#if defined(KVSTREAM_HAVE_NCCL) && defined(KVSTREAM_HAVE_CUDA_TORCH)

struct Row {
  int64_t rows = 0, hidden = 0;
  double eager_us = 0, graph_us = 0;  // per all-reduce, rank 0's events
};

// Rank r's timing of one shape: `iters` eager all-reduces between two
// events, then `replays` replays of a graph holding `graph_ops` of them.
// Every rank runs the same sequence (collectives must match); rank 0's
// times are reported.
absl::Status TimeShape(int r, Communicator& comm, Row& row) {
  c10::cuda::CUDAGuard device(r);
  const c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(r));
  c10::cuda::CUDAStreamGuard on(stream);
  at::Tensor t = at::randn({row.rows, row.hidden}, at::device(at::Device(at::kCUDA, r)).dtype(at::kBFloat16)) * 0.01;
  for (int i = 0; i < 20; ++i) KV_RETURN_IF_ERROR(comm.AllReduceSum(t));  // NCCL's lazy setup
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  const int iters = absl::GetFlag(FLAGS_iters);
  start.record(stream);
  for (int i = 0; i < iters; ++i) KV_RETURN_IF_ERROR(comm.AllReduceSum(t));
  stop.record(stream);
  stop.synchronize();
  const double eager_us = 1e3 * start.elapsed_time(stop) / iters;

  at::cuda::CUDAGraph graph;
  const int ops = absl::GetFlag(FLAGS_graph_ops);
  graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
  absl::Status captured = absl::OkStatus();
  for (int i = 0; i < ops && captured.ok(); ++i) captured = comm.AllReduceSum(t);
  graph.capture_end();
  KV_RETURN_IF_ERROR(captured);
  for (int i = 0; i < 3; ++i) graph.replay();
  const int replays = absl::GetFlag(FLAGS_replays);
  start.record(stream);
  for (int i = 0; i < replays; ++i) graph.replay();
  stop.record(stream);
  stop.synchronize();
  if (r == 0) {
    row.eager_us = eager_us;
    row.graph_us = 1e3 * start.elapsed_time(stop) / (static_cast<double>(replays) * ops);
  }
  return absl::OkStatus();
}

int Main() {
  const int gpus = absl::GetFlag(FLAGS_gpus);
  if (gpus < 2 || c10::cuda::device_count() < gpus) {
    std::fprintf(stderr, "allreduce_bench: --gpus=%d needs that many GPUs (this machine has %d)\n", gpus,
                 static_cast<int>(c10::cuda::device_count()));
    return 1;
  }
  std::vector<Row> rows;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',', absl::SkipEmpty())) {
    std::vector<std::string> p = absl::StrSplit(s, 'x');
    Row row;
    if (p.size() != 2 || !absl::SimpleAtoi(p[0], &row.rows) || !absl::SimpleAtoi(p[1], &row.hidden) || row.rows < 1 ||
        row.hidden < 1) {
      std::fprintf(stderr, "allreduce_bench: bad shape '%s' (want ROWSxHIDDEN, both >= 1)\n", std::string(s).c_str());
      return 2;
    }
    rows.push_back(row);
  }
  std::vector<int> devices;
  for (int r = 0; r < gpus; ++r) devices.push_back(r);
  auto comms = MakeNcclGroup(devices);
  if (!comms.ok()) {
    std::fprintf(stderr, "allreduce_bench: %s\n", comms.status().ToString().c_str());
    return 1;
  }
  std::vector<Communicator*> raw;
  for (auto& c : *comms) raw.push_back(c.get());
  TpRunner runner(raw);
  std::printf("%-8s %-8s %-10s %-12s %-12s %-14s\n", "rows", "hidden", "bytes", "eager_us", "graph_us",
              "graph_per_layer_us");
  for (Row& row : rows) {
    const absl::Status s = runner.RunAll([&](int r) { return TimeShape(r, *raw[static_cast<size_t>(r)], row); });
    if (!s.ok()) {
      std::fprintf(stderr, "allreduce_bench: %s\n", s.ToString().c_str());
      return 1;
    }
    std::printf("%-8lld %-8lld %-10lld %-12.2f %-12.2f %-14.2f\n", static_cast<long long>(row.rows),
                static_cast<long long>(row.hidden), static_cast<long long>(row.rows * row.hidden * 2), row.eager_us,
                row.graph_us, 2 * row.graph_us);
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream f(path);
    f << "{\"bench\": \"allreduce\", \"commit\": \"" << absl::GetFlag(FLAGS_commit) << "\", \"device\": \""
      << at::cuda::getDeviceProperties(0)->name << "\", \"gpus\": " << gpus
      << ", \"dtype\": \"bf16\", \"graph_ops\": " << absl::GetFlag(FLAGS_graph_ops)
      << ", \"note\": \"per all-reduce; per layer = 2 (after o, after down)\", \"rows\": [";
    for (size_t i = 0; i < rows.size(); ++i) {
      f << (i ? ", " : "") << "{\"rows\": " << rows[i].rows << ", \"hidden\": " << rows[i].hidden
        << ", \"bytes\": " << rows[i].rows * rows[i].hidden * 2 << ", \"eager_us\": " << rows[i].eager_us
        << ", \"graph_us\": " << rows[i].graph_us << ", \"graph_per_layer_us\": " << 2 * rows[i].graph_us << "}";
    }
    f << "]}\n";
  }
  return 0;
}

#else

int Main() {
  std::fprintf(stderr, "allreduce_bench: needs a CUDA build with NCCL (KVSTREAM_CUDA=ON)\n");
  return 1;
}

#endif

}  // namespace
}  // namespace kvstream

int main(int argc, char** argv) {
  kvstream::DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return kvstream::Main();
}
