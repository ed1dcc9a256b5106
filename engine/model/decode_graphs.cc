#include "engine/model/decode_graphs.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <string>
#include <utility>

#include "engine/env_switch.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/upload_fence.h"
#include "engine/status_macros.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAGraph.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace kvstream {

int64_t DecodeGraphs::Bucket(int64_t rows) {
  static constexpr int64_t kBuckets[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256};
  for (int64_t b : kBuckets) {
    if (rows <= b) return b;
  }
  return kMaxRows;
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH

struct DecodeGraphs::Impl {
  // The stream is on the model's GPU, not the constructing thread's current
  // one: a tensor-parallel rank's shard is built on rank 0's thread, and a
  // stream of the wrong device would capture none of the rank's kernels.
  explicit Impl(LlamaModel& m)
      : model(m), stream(c10::cuda::getStreamFromPool(false, m.device().index())), pool(at::cuda::graph_pool_handle()) {}

  // All layers, the head and the row statistics over the fixed buffers,
  // rows [0, padded). The statistics kernel writes each row's argmax into
  // `tok` last: the next step's token if the caller feeds it forward.
  absl::Status Device(int64_t padded, const AttentionGroup& group, const StepContext& ctx) {
    at::Tensor x = model.Embed(tok.narrow(0, 0, padded));
    KV_ASSIGN_OR_RETURN(at::Tensor h, model.Layers(x, pos.narrow(0, 0, padded), {&group, 1}, ctx));
    KV_ASSIGN_OR_RETURN(at::Tensor l, model.Logits(h));
    logits.narrow(0, 0, padded).copy_(l);
    RowStatsParams p;
    p.logits = logits.const_data_ptr();
    p.out = reinterpret_cast<RowStats*>(stats.mutable_data_ptr<uint8_t>());
    p.next_token = tok.mutable_data_ptr<int64_t>();
    p.ld = logits.stride(0);
    p.rows = static_cast<int>(padded);
    p.vocab = static_cast<int>(logits.size(1));
    p.dtype = KvDType::kFp32;
    if (const cudaError_t e = LaunchRowStats(p, stream); e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("decode graph row statistics: ", cudaGetErrorString(e)));
    }
    return absl::OkStatus();
  }

  absl::Status Init() {
    if (tok.defined()) return absl::OkStatus();
    auto opts = at::TensorOptions().device(model.device());
    tok = at::zeros({kMaxRows}, opts.dtype(at::kLong));
    pos = at::zeros({kMaxRows}, opts.dtype(at::kLong));
    logits = at::zeros({kMaxRows, model.config().vocab_size}, opts.dtype(at::kFloat));
    stats = at::zeros({kMaxRows * static_cast<int64_t>(sizeof(RowStats))}, opts.dtype(at::kByte));
    auto pinned = at::TensorOptions().pinned_memory(true);
    tok_host = at::empty({kMaxRows}, pinned.dtype(at::kLong));
    pos_host = at::empty({kMaxRows}, pinned.dtype(at::kLong));
    stats_host = at::empty({kSlots * kMaxRows * static_cast<int64_t>(sizeof(RowStats))}, pinned.dtype(at::kByte));
    for (cudaEvent_t* e : {&caller_ready, &graph_done}) C10_CUDA_CHECK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));
    for (Slot& sl : slots) {
      C10_CUDA_CHECK(cudaEventCreateWithFlags(&sl.ready, cudaEventDisableTiming));
      C10_CUDA_CHECK(cudaEventCreate(&sl.begin));
      C10_CUDA_CHECK(cudaEventCreate(&sl.end));
    }
    return staged.Init();
  }

  // The step's outputs, enqueued behind it on `stream`: a copy of the
  // logits, the statistics copied into the next pinned slot, and the
  // caller's stream made to wait for all of it (work the caller enqueues
  // next, such as AKV's tier moves in EndStep, runs after the step).
  GraphStepOut Finish(int64_t rows, bool timed, cudaStream_t caller) {
    Slot& sl = slots[next_slot];
    RowStats* host = reinterpret_cast<RowStats*>(stats_host.mutable_data_ptr<uint8_t>()) + next_slot * kMaxRows;
    next_slot = (next_slot + 1) % kSlots;
    GraphStepOut out;
    out.logits = logits.narrow(0, 0, rows).clone();
    C10_CUDA_CHECK(cudaMemcpyAsync(host, stats.const_data_ptr(), static_cast<size_t>(rows) * sizeof(RowStats),
                                   cudaMemcpyDeviceToHost, stream));
    C10_CUDA_CHECK(cudaEventRecord(sl.ready, stream));
    C10_CUDA_CHECK(cudaEventRecord(graph_done, stream));
    C10_CUDA_CHECK(cudaStreamWaitEvent(caller, graph_done, 0));
    sl.timed = timed;
    out.stats.host = host;
    out.stats.rows = rows;
    out.stats.wait = [this, &sl]() -> absl::Status {
      if (const cudaError_t e = cudaEventSynchronize(sl.ready); e != cudaSuccess) {
        return absl::InternalError(absl::StrCat("decode graph step: ", cudaGetErrorString(e)));
      }
      if (sl.timed) {  // count each replay once
        float ms = 0;
        if (cudaEventElapsedTime(&ms, sl.begin, sl.end) == cudaSuccess) replay_gpu_ms += ms;
        sl.timed = false;
      }
      return absl::OkStatus();
    };
    return out;
  }

  ~Impl() {
    for (cudaEvent_t e : {caller_ready, graph_done}) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    for (Slot& sl : slots) {
      for (cudaEvent_t e : {sl.ready, sl.begin, sl.end}) {
        if (e != nullptr) cudaEventDestroy(e);
      }
    }
  }

  LlamaModel& model;
  c10::cuda::CUDAStream stream;
  at::cuda::MempoolId_t pool;  // shared: graphs replay one at a time
  at::Tensor tok, pos, logits;  // [kMaxRows], [kMaxRows], [kMaxRows, V]
  at::Tensor stats;             // [kMaxRows] RowStats (as bytes)
  // (strategy, padded rows, the strategy's key): keys are per strategy.
  std::map<std::tuple<const Strategy*, int64_t, int64_t>, std::unique_ptr<at::cuda::CUDAGraph>> graphs;
  int64_t replays = 0;
  bool enabled = true;
  at::Tensor tok_host, pos_host;  // [kMaxRows] pinned images of tok, pos
  UploadFence staged{"decode graphs"};  // their last upload
  // Pinned statistics: a step and the one run ahead of it are in flight at
  // most, so two slots; each with the events of its copy and its replay
  // (GPU time, so benches can split a step into GPU time and the host's gap).
  static constexpr int kSlots = 2;
  struct Slot {
    cudaEvent_t ready = nullptr, begin = nullptr, end = nullptr;
    bool timed = false;
  };
  Slot slots[kSlots];
  int next_slot = 0;
  at::Tensor stats_host;  // [kSlots, kMaxRows] RowStats (as bytes)
  cudaEvent_t caller_ready = nullptr, graph_done = nullptr;
  double replay_gpu_ms = 0;
};

DecodeGraphs::DecodeGraphs(LlamaModel& model) : impl_(std::make_unique<Impl>(model)) {
  impl_->enabled = EnvSwitchOn("KVSTREAM_CUDA_GRAPHS");
}

DecodeGraphs::~DecodeGraphs() = default;

at::Tensor DecodeGraphs::FedTokens(int64_t rows) const { return impl_->tok.narrow(0, 0, rows); }

std::optional<absl::StatusOr<GraphStepOut>> DecodeGraphs::TryRun(absl::Span<const AttentionGroup> groups,
                                                                 const std::vector<int64_t>& ids,
                                                                 const std::vector<int64_t>& pos,
                                                                 const StepContext& ctx, bool tokens_fed) {
  Impl& m = *impl_;
  if (!m.enabled || groups.size() != 1 || !groups[0].strategy->SupportsDecodePrepare()) return std::nullopt;
  if (!groups[0].strategy->CanPrepareDecode(groups[0].caches)) return std::nullopt;
  const AttentionGroup& g = groups[0];
  const int64_t B = static_cast<int64_t>(g.caches.size());
  if (B > kMaxRows || static_cast<int64_t>(pos.size()) != B) return std::nullopt;  // some row is not decode
  for (const SeqStep& s : g.steps) {
    if (s.n_new != 1 || s.is_prompt) return std::nullopt;  // a one-token prompt chunk is not a decode step
  }

  auto run = [&]() -> absl::StatusOr<GraphStepOut> {
    const int64_t padded = Bucket(B);
    KV_RETURN_IF_ERROR(m.Init());
    // The step follows whatever the caller enqueued on its own stream.
    const cudaStream_t caller = at::cuda::getCurrentCUDAStream(m.model.device().index()).stream();
    C10_CUDA_CHECK(cudaEventRecord(m.caller_ready, caller));
    C10_CUDA_CHECK(cudaStreamWaitEvent(m.stream, m.caller_ready, 0));
    c10::cuda::CUDAStreamGuard guard(m.stream);
    // Pinned images, uploaded asynchronously (a pageable copy blocks the
    // host); the last upload must have read them before they are rewritten.
    KV_RETURN_IF_ERROR(m.staged.WaitLast());
    int64_t* pos_h = m.pos_host.data_ptr<int64_t>();
    std::fill(pos_h, pos_h + padded, 0);
    std::copy(pos.begin(), pos.end(), pos_h);
    if (!tokens_fed) {
      int64_t* tok_h = m.tok_host.data_ptr<int64_t>();
      std::fill(tok_h, tok_h + padded, 0);
      std::copy(ids.begin(), ids.end(), tok_h);
      m.tok.narrow(0, 0, padded).copy_(m.tok_host.narrow(0, 0, padded), /*non_blocking=*/true);
    }
    m.pos.narrow(0, 0, padded).copy_(m.pos_host.narrow(0, 0, padded), /*non_blocking=*/true);
    KV_RETURN_IF_ERROR(m.staged.Record());  // on m.stream: the guard above made it current
    KV_ASSIGN_OR_RETURN(int64_t key, g.strategy->PrepareDecode(g.caches, g.steps, padded, ctx));
    StepContext prepared = ctx;
    prepared.decode_prepared = true;

    const auto graph_key = std::make_tuple(static_cast<const Strategy*>(g.strategy), padded, key);
    auto it = m.graphs.find(graph_key);
    if (it == m.graphs.end()) {
      // First step of this shape: run it eagerly on this stream (this also
      // warms cuBLAS handles, workspaces and lazy allocations), then capture
      // it for the next steps. The step's appends are idempotent, so the
      // capture (which runs nothing) and later replays need no undo. The
      // capture must not overwrite the token buffer the eager run fed
      // forward: it runs nothing, and the eager run's writes are final.
      KV_RETURN_IF_ERROR(m.Device(padded, g, prepared));
      GraphStepOut out = m.Finish(B, /*timed=*/false, caller);
      auto graph = std::make_unique<at::cuda::CUDAGraph>();
      absl::Status s;
      try {
        graph->capture_begin(m.pool, cudaStreamCaptureModeThreadLocal);
        s = m.Device(padded, g, prepared);
        graph->capture_end();
      } catch (const c10::Error& e) {
        s = absl::InternalError(e.what_without_backtrace());
      }
      if (s.ok()) {
        // Keys of strategies with per-sequence buffers (AKV) name a set of
        // sequences, so they keep coming: bound the graphs kept.
        if (m.graphs.size() >= kMaxGraphs) m.graphs.clear();
        m.graphs.emplace(graph_key, std::move(graph));
      } else {
        // Not capturable: stay correct, go eager from now on.
        spdlog::warn("CUDA graph capture failed ({}); decode steps run eagerly", s.ToString());
        m.enabled = false;
      }
      return out;
    }
    Impl::Slot& sl = m.slots[m.next_slot];
    C10_CUDA_CHECK(cudaEventRecord(sl.begin, m.stream));
    it->second->replay();
    C10_CUDA_CHECK(cudaEventRecord(sl.end, m.stream));
    ++m.replays;
    return m.Finish(B, /*timed=*/true, caller);
  };
  try {
    return run();
  } catch (const c10::Error& e) {
    return absl::StatusOr<GraphStepOut>(absl::InternalError(std::string("CUDA graph decode step: ") +
                                                            e.what_without_backtrace()));
  }
}

int64_t DecodeGraphs::graphs_captured() const { return static_cast<int64_t>(impl_->graphs.size()); }
int64_t DecodeGraphs::replays() const { return impl_->replays; }
double DecodeGraphs::replay_gpu_ms() const { return impl_->replay_gpu_ms; }
bool DecodeGraphs::enabled() const { return impl_->enabled; }
void DecodeGraphs::Disable() {
  impl_->enabled = false;
  impl_->graphs.clear();
}

#else  // no CUDA torch: every step runs eagerly

struct DecodeGraphs::Impl {};
DecodeGraphs::DecodeGraphs(LlamaModel&) : impl_(std::make_unique<Impl>()) {}
DecodeGraphs::~DecodeGraphs() = default;
std::optional<absl::StatusOr<GraphStepOut>> DecodeGraphs::TryRun(absl::Span<const AttentionGroup>,
                                                                 const std::vector<int64_t>&,
                                                                 const std::vector<int64_t>&, const StepContext&,
                                                                 bool) {
  return std::nullopt;
}
at::Tensor DecodeGraphs::FedTokens(int64_t) const { return at::Tensor(); }
int64_t DecodeGraphs::graphs_captured() const { return 0; }
int64_t DecodeGraphs::replays() const { return 0; }
double DecodeGraphs::replay_gpu_ms() const { return 0; }
bool DecodeGraphs::enabled() const { return false; }
void DecodeGraphs::Disable() {}

#endif

}  // namespace kvstream
