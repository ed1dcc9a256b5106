// One running request inside a step loop (Engine::GenerateBatch or the
// Scheduler): its generation state, strategy and cache, and the two halves of
// a step that concern it: what it feeds the forward, and what it does with
// the logits that come back.
#pragma once

#include <memory>

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

}  // namespace kvstream
