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
  bool Consume(const SeqInput& in, const float* logits, int64_t vocab, double log_z, double step_ms,
               StreamDelta* delta);
  // Final outcome; frees the cache at once.
  GenerateOutcome Finish();
};

// A step's logits on the host for sampling: rows [B, V] fp32 and each row's
// log-sum-exp, computed where the logits are (one reduction on the GPU
// instead of B passes of exp over the vocabulary on the host). On CUDA the
// copy goes through pinned memory.
struct HostLogits {
  at::Tensor logits;  // [B, V] fp32, host
  at::Tensor lse;     // [B] fp64, host
  const float* row(size_t i) const { return logits.const_data_ptr<float>() + i * logits.size(1); }
  double log_z(size_t i) const { return lse.const_data_ptr<double>()[i]; }
};
HostLogits ToHost(const at::Tensor& logits);

}  // namespace kvstream
