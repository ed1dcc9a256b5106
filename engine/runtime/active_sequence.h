// One running request inside a step loop (Engine::GenerateBatch or the
// Scheduler): its generation state, strategy and cache, and the two halves of
// a step that concern it: what it feeds the forward, and what it does with
// the logits that come back.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/generation.h"

#include <ATen/core/Tensor.h>

namespace kvstream {

struct ActiveSequence {
  std::unique_ptr<Generation> gen;
  Strategy* strategy = nullptr;
  std::unique_ptr<SequenceCache> cache;

  // The next prompt chunk (at most `prefill_chunk` tokens, or the strategy's
  // own chunk) or the last sampled token.
  SeqInput NextInput(int64_t prefill_chunk) const;
  // Applies one forward's result. Returns true and fills *delta when a token
  // was produced (a non-final prompt chunk produces none).
  bool Consume(const SeqInput& in, const RowLogits& row, double step_ms, StreamDelta* delta);
  // Final outcome; frees the cache at once.
  GenerateOutcome Finish();
};

// A step's logits on the host for sampling: rows [B, V] fp32 and each row's
// log-sum-exp, computed where the logits are (one reduction on the GPU
// instead of B passes of exp over the vocabulary on the host). On CUDA the
// copy goes through pinned memory.
// With `full` false (no request of the step needs its row), only each row's
// argmax and maximum cross to the host: B values instead of B x V.
struct HostLogits {
  at::Tensor logits;  // [B, V] fp32, host; undefined when not full
  at::Tensor lse;     // [B] fp64, host
  at::Tensor argmax;  // [B] int64, host (when not full)
  at::Tensor max;     // [B] fp32, host (when not full)
  RowLogits Row(size_t i) const;
};
HostLogits ToHost(const at::Tensor& logits, bool full);
// The same for a step of the serving loops: greedy rows of a decode-graph
// step read the statistics it copied to pinned memory (waiting for them);
// otherwise as above.
absl::StatusOr<HostLogits> ToHost(const StepResult& step, bool full);

// Run-ahead (decode_graphs.h): whether the next decode step of `rows`
// (those of `step`, whose inputs were `inputs`) may go to the GPU before
// `step`'s tokens reach the host. Holds when the step fed its argmaxes
// forward and every row is a greedy decode row with room for a token after
// the pending one. A row that then stops on EOS or a stop string has had
// one more token appended to its cache than it returns; its results from
// the step run ahead are dropped. KVSTREAM_RUN_AHEAD=0 turns it off.
bool CanRunAhead(const StepResult& step, absl::Span<const SeqInput> inputs,
                 absl::Span<const ActiveSequence* const> rows);

// A step on the GPU whose results the host has not read yet. The serving
// loops (Engine::GenerateBatch, the Scheduler) hold one so that the step run
// ahead of it can be launched before it is read.
struct LaunchedStep {
  std::vector<SeqInput> inputs;
  std::vector<uint64_t> rows;  // the loop's id of each row (GenerateBatch: index; Scheduler: Running::id)
  StepResult result;
  bool full = false;  // some row needs its whole logits row
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
};
// The rows' inputs for the step run ahead of `step`: each row's next position,
// its token the one `step` writes on the device.
std::vector<SeqInput> RunAheadInputs(const LaunchedStep& step);
// The step's time as its rows see it, taken when the host has read it: from
// the previous read or its launch, whichever is later. Moves *last_read to now.
double StepReadMs(const LaunchedStep& step, std::chrono::steady_clock::time_point* last_read);

}  // namespace kvstream
