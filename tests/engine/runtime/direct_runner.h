// Runs requests through an engine's model with a Strategy the test owns (not
// one from the registry), with the runner's own step halves
// (ActiveSequence::NextInput / Consume), so prefill chunking and the probe
// hook are exercised exactly as Engine::GenerateBatch does.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/active_sequence.h"
#include "engine/runtime/engine.h"

namespace kvstream::testing {

// `inspect(i, cache)` sees request i's cache just before it is freed.
inline absl::StatusOr<std::vector<GenerateOutcome>> RunDirect(
    Engine& engine, Strategy& strategy, const std::vector<GenerateSpec>& specs,
    const std::function<void(size_t, const SequenceCache&)>& inspect = nullptr) {
  std::vector<ActiveSequence> act(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    act[i].gen = std::make_unique<Generation>(specs[i], engine.tokenizer());
    act[i].strategy = &strategy;
    StrategyConfig kv = specs[i].kv;
    kv.max_tokens = TotalTokens(specs[i]);
    auto cache = strategy.Open(kv);
    if (!cache.ok()) return cache.status();
    act[i].cache = std::move(*cache);
  }
  std::vector<GenerateOutcome> out(specs.size());
  at::InferenceMode guard;
  while (true) {
    std::vector<SeqInput> inputs;
    std::vector<size_t> who;
    for (size_t i = 0; i < act.size(); ++i) {
      if (act[i].gen->finished()) continue;
      inputs.push_back(act[i].NextInput(engine.options().prefill_chunk));
      who.push_back(i);
    }
    if (inputs.empty()) break;
    auto logits = engine.model().Forward(inputs, StepContext{engine.NextStepId()});
    if (!logits.ok()) return logits.status();
    const HostLogits host = ToHost(*logits, true);
    for (size_t r = 0; r < inputs.size(); ++r) {
      ActiveSequence& a = act[who[r]];
      StreamDelta d;
      if (!a.Consume(inputs[r], host.Row(r), 0.0, &d)) continue;
      if (a.gen->finished()) {
        if (inspect) inspect(who[r], *a.cache);
        out[who[r]] = a.Finish();
      }
    }
  }
  return out;
}

}  // namespace kvstream::testing
