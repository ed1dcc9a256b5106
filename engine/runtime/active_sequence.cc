#include "engine/runtime/active_sequence.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "engine/env_switch.h"
#include "engine/runtime/step_error.h"
#include "engine/status_macros.h"
#include "kernels/sampling/row_stats.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#endif

namespace kvstream {

SeqInput ActiveSequence::NextInput(int64_t prefill_chunk) const {
  SeqInput in;
  in.strategy = strategy;
  in.cache = cache.get();
  const auto& prompt = gen->spec().prompt_ids;
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (gen->prompt_done < P) {
    const int64_t done = gen->prompt_done;
    const std::optional<PrefillPlan> plan = cache->NextPrefill(done, P);
    int64_t chunk = plan.has_value() ? plan->n_tokens : cache->PrefillChunk().value_or(prefill_chunk);
    chunk = std::min<int64_t>(std::max<int64_t>(chunk, 1), P - done);
    in.tokens.assign(prompt.begin() + done, prompt.begin() + done + chunk);
    in.start_pos = done;
    in.is_prompt = true;
    in.last_prompt_chunk = done + chunk == P;
    // Ephemeral probe suffix (laser_kv.md §6.2): prompt tokens at their own
    // positions, after the chunk. Never on the prompt's last chunk, whose
    // logits give the first output token.
    if (plan.has_value() && plan->n_probe > 0 && !in.last_prompt_chunk && plan->probe_start >= 0 &&
        plan->probe_start + plan->n_probe <= P) {
      in.tokens.insert(in.tokens.end(), prompt.begin() + plan->probe_start,
                       prompt.begin() + plan->probe_start + plan->n_probe);
      in.n_probe = plan->n_probe;
      in.probe_start_pos = plan->probe_start;
    }
  } else {
    in.tokens = {gen->last_token};
    in.start_pos = P + gen->generated() - 1;
  }
  return in;
}

bool ActiveSequence::Consume(const SeqInput& in, const RowLogits& row, double step_ms, StreamDelta* delta) {
  if (in.is_prompt) {
    gen->prompt_done += static_cast<int64_t>(in.tokens.size()) - in.n_probe;  // the probe is not kept
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

namespace {

HostLogits FromRowStats(const RowStats* rows, int64_t B) {
  HostLogits h;
  h.lse = at::empty({B}, at::kDouble);
  h.argmax = at::empty({B}, at::kLong);
  h.max = at::empty({B}, at::kFloat);
  for (int64_t i = 0; i < B; ++i) {
    h.lse.mutable_data_ptr<double>()[i] = rows[i].lse;
    h.argmax.mutable_data_ptr<int64_t>()[i] = rows[i].argmax;
    h.max.mutable_data_ptr<float>()[i] = rows[i].max_logit;
  }
  return h;
}

// Greedy rows on CUDA: max, first argmax and log-sum-exp of every row in one
// kernel (kernels/sampling/row_stats.h) and one device-to-host copy, instead
// of ~13 ATen launches and three synchronous copies per step. nullopt if the
// launch is refused (the caller then takes the ATen path).
std::optional<HostLogits> GreedyStatsOnDevice(const at::Tensor& l) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  const int64_t B = l.size(0);
  at::Tensor stats = at::empty({B * static_cast<int64_t>(sizeof(RowStats))}, l.options().dtype(at::kByte));
  RowStatsParams p;
  p.logits = l.const_data_ptr();
  p.out = reinterpret_cast<RowStats*>(stats.mutable_data_ptr<uint8_t>());
  p.ld = l.stride(0);
  p.rows = static_cast<int>(B);
  p.vocab = static_cast<int>(l.size(1));
  p.dtype = KvDType::kFp32;
  if (RowStatsValidate(p) != nullptr || LaunchRowStats(p, at::cuda::getCurrentCUDAStream()) != cudaSuccess) {
    return std::nullopt;
  }
  const at::Tensor host = stats.cpu();  // synchronous: the host samples next
  std::vector<RowStats> rows(static_cast<size_t>(B));
  std::memcpy(rows.data(), host.const_data_ptr<uint8_t>(), rows.size() * sizeof(RowStats));
  return FromRowStats(rows.data(), B);
#else
  (void)l;
  return std::nullopt;
#endif
}

}  // namespace

HostLogits ToHost(const at::Tensor& logits, bool full) {
  const at::Tensor l = logits.to(at::kFloat).contiguous();
  if (!full && l.is_cuda()) {
    if (std::optional<HostLogits> h = GreedyStatsOnDevice(l)) return *std::move(h);
  }
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

absl::StatusOr<HostLogits> ToHost(const StepResult& step, bool full) {
  if (step.stats.has_value()) {
    KV_RETURN_IF_ERROR(step.stats->wait());  // also books the replay's GPU time
    if (!full) return FromRowStats(step.stats->host, step.stats->rows);
  }
  try {
    return ToHost(step.logits, full);
  } catch (const c10::Error& e) {
    return StepErrorStatus(e, "reading the step's logits");
  }
}

bool CanRunAhead(const StepResult& step, absl::Span<const SeqInput> inputs,
                 absl::Span<const ActiveSequence* const> rows) {
  static const bool enabled = EnvSwitchOn("KVSTREAM_RUN_AHEAD");
  if (!enabled || !step.stats.has_value() || inputs.size() != rows.size() ||
      static_cast<int64_t>(rows.size()) != step.stats->rows) {
    return false;
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const Generation& g = *rows[i]->gen;
    if (inputs[i].is_prompt || g.finished() || g.NeedsFullLogits() ||
        g.generated() + 2 > g.spec().sampling.max_new_tokens) {
      return false;
    }
  }
  return true;
}

std::vector<SeqInput> RunAheadInputs(const LaunchedStep& step) {
  std::vector<SeqInput> next;
  next.reserve(step.inputs.size());
  for (const SeqInput& prev : step.inputs) {
    SeqInput in;
    in.strategy = prev.strategy;
    in.cache = prev.cache;
    in.tokens = {0};  // placeholder: the token is on the device
    in.start_pos = prev.start_pos + static_cast<int64_t>(prev.tokens.size());
    in.token_on_device = true;
    next.push_back(std::move(in));
  }
  return next;
}

double StepReadMs(const LaunchedStep& step, std::chrono::steady_clock::time_point* last_read) {
  const auto now = std::chrono::steady_clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - std::max(*last_read, step.at)).count();
  *last_read = now;
  return ms;
}

}  // namespace kvstream
