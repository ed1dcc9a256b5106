// Drives a LaserKvSequenceCache step by step as the runner would (NextPrefill
// plans, probe rows, EndStep), with synthetic q/k/v: every row is a fixed
// pseudo-random function of (layer, position, head, channel), so a kept row
// can be checked against the value fed at its position in every layer.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "engine/kv/laser_kv/laser_kv_strategy.h"
#include "engine/status_macros.h"

namespace kvstream::testing {

inline KvGeometry LaserGeometry(int64_t layers = 1, int64_t heads = 2, int64_t kv_heads = 1, int64_t D = 64) {
  KvGeometry g;
  g.n_layers = layers;
  g.n_heads = heads;
  g.n_kv_heads = kv_heads;
  g.head_dim = D;
  g.context_length = 1 << 17;
  return g;
}

// [heads, n, D] fp32: frac(sin(...) * 43758.5453) - 0.5 for each element.
inline at::Tensor SynthRows(int64_t layer, const std::vector<int64_t>& pos, int64_t heads, int64_t D, double salt) {
  at::Tensor p = at::empty({static_cast<int64_t>(pos.size())}, at::kDouble);
  for (size_t i = 0; i < pos.size(); ++i) p.mutable_data_ptr<double>()[i] = static_cast<double>(pos[i]);
  at::Tensor h = at::arange(heads, at::kDouble).view({heads, 1, 1});
  at::Tensor c = at::arange(D, at::kDouble).view({1, 1, D});
  at::Tensor x = at::sin(p.view({1, -1, 1}) * 12.9898 + c * 78.233 + h * 37.719 + (layer * 4.1 + salt)) * 43758.5453;
  return (x - at::floor(x) - 0.5).to(at::kFloat);
}

// Runs a prompt of P tokens and `gen` decode steps; `after_step(seq)` runs
// after each EndStep.
inline absl::Status DriveLaser(LaserKvSequenceCache& cache, const KvGeometry& g, int64_t P, int64_t gen,
                               const std::function<void(const SeqStep&)>& after_step = nullptr) {
  int64_t done = 0, step = 0;
  auto run = [&](const SeqStep& seq) -> absl::Status {
    std::vector<int64_t> pos;
    for (int64_t j = 0; j < seq.n_new; ++j) pos.push_back(seq.start_pos + j);
    for (int64_t j = 0; j < seq.n_probe; ++j) pos.push_back(seq.probe_start_pos + j);
    const StepContext ctx{step++};
    for (int64_t l = 0; l < g.n_layers; ++l) {
      const auto to = at::TensorOptions().device(g.device).dtype(g.dtype);
      at::Tensor q = SynthRows(l, pos, g.n_heads, g.head_dim, 1.0).to(to);
      at::Tensor k = SynthRows(l, pos, g.n_kv_heads, g.head_dim, 2.0).to(to);
      at::Tensor v = SynthRows(l, pos, g.n_kv_heads, g.head_dim, 3.0).to(to);
      KV_ASSIGN_OR_RETURN(at::Tensor o, cache.Forward(l, q, k, v, seq, ctx));
      if (o.size(1) != seq.rows()) return absl::InternalError("output rows");
    }
    KV_RETURN_IF_ERROR(cache.EndStep(seq, ctx));
    if (after_step) after_step(seq);
    return absl::OkStatus();
  };
  while (done < P) {
    SeqStep seq;
    seq.start_pos = done;
    seq.is_prompt = true;
    const std::optional<PrefillPlan> plan = cache.NextPrefill(done, P);
    seq.n_new = plan ? plan->n_tokens : std::min(*cache.PrefillChunk(), P - done);
    if (plan && plan->n_probe > 0) {
      seq.n_probe = plan->n_probe;
      seq.probe_start_pos = plan->probe_start;
    }
    seq.last_prompt_chunk = done + seq.n_new == P;
    KV_RETURN_IF_ERROR(run(seq));
    done += seq.n_new;
  }
  for (int64_t i = 0; i < gen; ++i) KV_RETURN_IF_ERROR(run(SeqStep{P + i, 1, false, false}));
  return absl::OkStatus();
}

}  // namespace kvstream::testing
