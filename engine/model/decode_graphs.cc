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

  // All layers and the head over the fixed buffers, rows [0, padded).
  absl::Status Device(int64_t padded, const AttentionGroup& group, const StepContext& ctx) {
    at::Tensor x = model.Embed(tok.narrow(0, 0, padded));
    KV_ASSIGN_OR_RETURN(at::Tensor h, model.Layers(x, pos.narrow(0, 0, padded), {&group, 1}, ctx));
    KV_ASSIGN_OR_RETURN(at::Tensor l, model.Logits(h));
    logits.narrow(0, 0, padded).copy_(l);
    return absl::OkStatus();
  }

  LlamaModel& model;
  c10::cuda::CUDAStream stream;
  at::cuda::MempoolId_t pool;  // shared: graphs replay one at a time
  at::Tensor tok, pos, logits;  // [kMaxRows], [kMaxRows], [kMaxRows, V]
  // (strategy, padded rows, the strategy's key): keys are per strategy.
  std::map<std::tuple<const Strategy*, int64_t, int64_t>, std::unique_ptr<at::cuda::CUDAGraph>> graphs;
  int64_t replays = 0;
  bool enabled = true;
  // GPU time of the replays (events around each), so benches can split a
  // step into GPU time and the host's gap between steps.
  cudaEvent_t replay_begin = nullptr, replay_end = nullptr;
  double replay_gpu_ms = 0;
  at::Tensor tok_host, pos_host;  // [kMaxRows] pinned images of tok, pos
  UploadFence staged{"decode graphs"};  // their last upload
  ~Impl() {
    if (replay_begin != nullptr) cudaEventDestroy(replay_begin);
    if (replay_end != nullptr) cudaEventDestroy(replay_end);
  }
};

DecodeGraphs::DecodeGraphs(LlamaModel& model) : impl_(std::make_unique<Impl>(model)) {
  impl_->enabled = EnvSwitchOn("KVSTREAM_CUDA_GRAPHS");
}

DecodeGraphs::~DecodeGraphs() = default;

std::optional<absl::StatusOr<at::Tensor>> DecodeGraphs::TryRun(absl::Span<const AttentionGroup> groups,
                                                               const std::vector<int64_t>& ids,
                                                               const std::vector<int64_t>& pos,
                                                               const StepContext& ctx) {
  Impl& m = *impl_;
  if (!m.enabled || groups.size() != 1 || !groups[0].strategy->SupportsDecodePrepare()) return std::nullopt;
  if (!groups[0].strategy->CanPrepareDecode(groups[0].caches)) return std::nullopt;
  const AttentionGroup& g = groups[0];
  const int64_t B = static_cast<int64_t>(g.caches.size());
  if (B > kMaxRows || static_cast<int64_t>(ids.size()) != B) return std::nullopt;  // some row is not decode
  for (const SeqStep& s : g.steps) {
    if (s.n_new != 1) return std::nullopt;
  }

  auto run = [&]() -> absl::StatusOr<at::Tensor> {
    const int64_t padded = Bucket(B);
    c10::cuda::CUDAStreamGuard guard(m.stream);
    if (!m.tok.defined()) {
      auto opts = at::TensorOptions().device(m.model.device());
      m.tok = at::zeros({kMaxRows}, opts.dtype(at::kLong));
      m.pos = at::zeros({kMaxRows}, opts.dtype(at::kLong));
      m.logits = at::zeros({kMaxRows, m.model.config().vocab_size}, opts.dtype(at::kFloat));
    }
    if (!m.tok_host.defined()) {
      auto pinned = at::TensorOptions().dtype(at::kLong).pinned_memory(true);
      m.tok_host = at::empty({kMaxRows}, pinned);
      m.pos_host = at::empty({kMaxRows}, pinned);
      KV_RETURN_IF_ERROR(m.staged.Init());
    }
    // Pinned images, uploaded asynchronously (a pageable copy blocks the
    // host); the last upload must have read them before they are rewritten.
    // Defensive: a successful step ends in m.stream.synchronize(), a failed
    // one may not.
    KV_RETURN_IF_ERROR(m.staged.WaitLast());
    int64_t* tok_h = m.tok_host.data_ptr<int64_t>();
    int64_t* pos_h = m.pos_host.data_ptr<int64_t>();
    std::fill(tok_h, tok_h + padded, 0);
    std::fill(pos_h, pos_h + padded, 0);
    std::copy(ids.begin(), ids.end(), tok_h);
    std::copy(pos.begin(), pos.end(), pos_h);
    m.tok.narrow(0, 0, padded).copy_(m.tok_host.narrow(0, 0, padded), /*non_blocking=*/true);
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
      // capture (which runs nothing) and later replays need no undo.
      KV_RETURN_IF_ERROR(m.Device(padded, g, prepared));
      at::Tensor out = m.logits.narrow(0, 0, B).clone();
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
      m.stream.synchronize();
      return out;
    }
    if (m.replay_begin == nullptr) {
      C10_CUDA_CHECK(cudaEventCreate(&m.replay_begin));
      C10_CUDA_CHECK(cudaEventCreate(&m.replay_end));
    }
    C10_CUDA_CHECK(cudaEventRecord(m.replay_begin, m.stream));
    it->second->replay();
    C10_CUDA_CHECK(cudaEventRecord(m.replay_end, m.stream));
    ++m.replays;
    at::Tensor out = m.logits.narrow(0, 0, B).clone();
    m.stream.synchronize();  // callers read the logits from other streams
    float ms = 0;
    C10_CUDA_CHECK(cudaEventElapsedTime(&ms, m.replay_begin, m.replay_end));
    m.replay_gpu_ms += ms;
    return out;
  };
  try {
    return run();
  } catch (const c10::Error& e) {
    return absl::StatusOr<at::Tensor>(absl::InternalError(std::string("CUDA graph decode step: ") +
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
std::optional<absl::StatusOr<at::Tensor>> DecodeGraphs::TryRun(absl::Span<const AttentionGroup>,
                                                               const std::vector<int64_t>&,
                                                               const std::vector<int64_t>&, const StepContext&) {
  return std::nullopt;
}
int64_t DecodeGraphs::graphs_captured() const { return 0; }
int64_t DecodeGraphs::replays() const { return 0; }
double DecodeGraphs::replay_gpu_ms() const { return 0; }
bool DecodeGraphs::enabled() const { return false; }
void DecodeGraphs::Disable() {}

#endif

}  // namespace kvstream
