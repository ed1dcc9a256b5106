// CUDA graphs for decode steps. A decode step of a small batch is a few
// hundred small kernels (an 8B model: ~15 per layer x 32 layers) whose launch
// overhead rivals the time they take; replaying them as one captured graph
// removes it.
//
// A step qualifies when it runs on CUDA, every sequence has one new token,
// all sequences share one strategy whose PrepareDecode exists, and the batch
// fits the largest bucket. The batch is padded up to a bucket size
// (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256); the strategy does
// the step's host work (pages, block tables) into fixed device buffers and
// returns a key (e.g. its kernel's split count); one graph is captured per
// (bucket, key) on first use, after one eager warm-up run of the same step,
// and replayed afterwards. Token ids and positions go into fixed input
// buffers; logits come out of a fixed buffer. KVSTREAM_CUDA_GRAPHS=0 turns
// graphs off (every step eager), for A/B runs.
//
// A graph ends with the row statistics of kernels/sampling/row_stats.h
// (max, argmax, log-sum-exp per row), which it also writes into the token
// buffer as the next step's token ids. Nothing waits for the replay: the
// statistics come back through pinned memory behind an event
// (PendingRowStats), so the caller can enqueue the next decode step of
// greedy rows (SeqInput::token_on_device) before this one's tokens reach
// the host, and the GPU never idles for the host's work between steps
// (Engine::GenerateBatch and the Scheduler run ahead this way).
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv/kv_cache.h"
#include "kernels/sampling/row_stats.h"

namespace kvstream {

class LlamaModel;
struct AttentionGroup;

// A decode step's row statistics on their way to pinned host memory.
// `host` is valid once wait() returned OK, until two more steps have been
// run (the pinned buffer is a ring of two: a step and the one run ahead).
struct PendingRowStats {
  const RowStats* host = nullptr;  // [rows]
  int64_t rows = 0;
  std::function<absl::Status()> wait;
};

// A replayed (or first, eager) decode step: the logits [B, V] fp32 on the
// device (the caller's stream is ordered after the step) and the rows'
// statistics.
struct GraphStepOut {
  at::Tensor logits;
  PendingRowStats stats;
};

class DecodeGraphs {
 public:
  explicit DecodeGraphs(LlamaModel& model);
  ~DecodeGraphs();

  // The step through a graph, or nullopt when it does not qualify (the
  // caller runs it eagerly). With tokens_fed the rows' token ids are already
  // in the token buffer (the previous step's argmax, same rows in the same
  // order) and `ids` is not read. Returns without waiting for the GPU.
  std::optional<absl::StatusOr<GraphStepOut>> TryRun(absl::Span<const AttentionGroup> groups,
                                                     const std::vector<int64_t>& ids,
                                                     const std::vector<int64_t>& pos, const StepContext& ctx,
                                                     bool tokens_fed);
  // Rows [0, rows) of the token buffer (int64, on the device): the tokens
  // the last step fed forward, for a step that must run eagerly after all.
  at::Tensor FedTokens(int64_t rows) const;
  int64_t graphs_captured() const;
  int64_t replays() const;
  // Whether steps still go through graphs (false with KVSTREAM_CUDA_GRAPHS=0
  // or after a capture failed). Disable drops every graph and runs later
  // steps eagerly: tensor-parallel ranks must agree on it, since a step's
  // collectives are either captured on every rank or on none.
  bool enabled() const;
  void Disable();
  // Summed GPU time of the replays (ms), timed by events around each; a
  // replay counts once its statistics were waited for.
  double replay_gpu_ms() const;

  static constexpr int64_t kMaxRows = 256;
  // Graphs kept at once (all are dropped when a new one would pass it).
  static constexpr size_t kMaxGraphs = 64;
  // Smallest bucket >= rows (rows <= kMaxRows).
  static int64_t Bucket(int64_t rows);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstream
