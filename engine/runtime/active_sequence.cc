#include "engine/runtime/active_sequence.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace kvstream {

SeqInput ActiveSequence::NextInput(int64_t prefill_chunk) const {
  SeqInput in;
  in.strategy = strategy;
  in.cache = cache.get();
  const auto& prompt = gen->spec().prompt_ids;
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (gen->prompt_done < P) {
    int64_t chunk = cache->PrefillChunk().value_or(prefill_chunk);
    chunk = std::min<int64_t>(std::max<int64_t>(chunk, 1), P - gen->prompt_done);
    in.tokens.assign(prompt.begin() + gen->prompt_done, prompt.begin() + gen->prompt_done + chunk);
    in.start_pos = gen->prompt_done;
    in.is_prompt = true;
    in.last_prompt_chunk = gen->prompt_done + chunk == P;
  } else {
    in.tokens = {gen->last_token};
    in.start_pos = P + gen->generated() - 1;
  }
  return in;
}

bool ActiveSequence::Consume(const SeqInput& in, const RowLogits& row, double step_ms, StreamDelta* delta) {
  if (in.is_prompt) {
    gen->prompt_done += static_cast<int64_t>(in.tokens.size());
    gen->prefill_ms += step_ms;
    if (!in.last_prompt_chunk) return false;
  }
  *delta = gen->Accept(row);
  return true;
}

GenerateOutcome ActiveSequence::Finish() {
  GenerateOutcome o = gen->TakeOutcome(cache->Report());
  cache.reset();
  return o;
}

RowLogits HostLogits::Row(size_t i) const {
  RowLogits r;
  r.log_z = lse.const_data_ptr<double>()[i];
  if (logits.defined()) {
    r.vocab = logits.size(1);
    r.logits = logits.const_data_ptr<float>() + i * r.vocab;
  } else {
    r.argmax = static_cast<int32_t>(argmax.const_data_ptr<int64_t>()[i]);
    r.max_logit = max.const_data_ptr<float>()[i];
  }
  return r;
}

HostLogits ToHost(const at::Tensor& logits, bool full) {
  const at::Tensor l = logits.to(at::kFloat).contiguous();
  // fp32 reduction (max-shifted; ~1e-7 relative): no [B, V] fp64 temporary.
  const at::Tensor lse = at::logsumexp(l, 1).to(at::kDouble);
  HostLogits h;
  if (l.is_cpu()) {
    h.logits = l;
    h.lse = lse;
    return h;
  }
  if (!full) {  // argmax on the device: torch.argmax's first maximum
    auto [mx, idx] = at::max(l, 1);
    h.lse = lse.cpu();
    h.argmax = idx.cpu();
    h.max = mx.cpu();
    return h;
  }
  auto pinned = at::TensorOptions().device(at::kCPU).pinned_memory(true);
  h.logits = at::empty(l.sizes(), pinned.dtype(at::kFloat));
  h.lse = at::empty(lse.sizes(), pinned.dtype(at::kDouble));
  h.logits.copy_(l);  // synchronous: the host reads these next
  h.lse.copy_(lse);
  return h;
}

}  // namespace kvstream
