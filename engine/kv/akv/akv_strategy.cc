#include "engine/kv/akv/akv_strategy.h"

#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "engine/kv/akv/akv_batched_decode.h"
#include "engine/status_macros.h"

namespace kvstream {

absl::Status AkvStrategy::Validate(const StrategyConfig& config) const {
  absl::StatusOr<AkvConfig> c = ParseAkvConfig(config, geometry_.n_layers, geometry_.head_dim);
  if (!c.ok()) return c.status();
  const int bits[] = {c->warm_bits, c->cold_bits};
  for (int b : bits) {
    if (!AkvQuantSupports(static_cast<int>(geometry_.head_dim), b, std::min<int>(c->group_size,
                                                                                  static_cast<int>(geometry_.head_dim)))) {
      return absl::InvalidArgumentError(absl::StrCat("kv_compression.akv is not available for this model's head dim ",
                                                     geometry_.head_dim, " (AKV kernels take 64 or 128)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceCache>> AkvStrategy::Open(const StrategyConfig& config) {
  KV_RETURN_IF_ERROR(Validate(config));
  KV_ASSIGN_OR_RETURN(AkvConfig c, ParseAkvConfig(config, geometry_.n_layers, geometry_.head_dim));
  auto cache = std::make_unique<AkvSequenceCache>(c, MakeAkvPlan(c, geometry_, config.max_tokens), geometry_);
  try {
    KV_RETURN_IF_ERROR(cache->Init());
  } catch (const c10::Error& e) {
    // The tiers come from the torch allocator, beside the dense page pool:
    // out of memory is the request's problem, not the server's.
    return absl::ResourceExhaustedError(absl::StrCat("kv_compression.akv: cannot allocate the tier buffers (",
                                                     e.what_without_backtrace(), ")"));
  }
  return cache;
}

int64_t AkvStrategy::PredictBytes(const StrategyConfig& config, int64_t prompt_tokens, int64_t max_new_tokens) const {
  absl::StatusOr<AkvConfig> c = ParseAkvConfig(config, geometry_.n_layers, geometry_.head_dim);
  if (!c.ok()) return 0;  // Validate runs first and refuses it
  const AkvPlan plan = MakeAkvPlan(*c, geometry_, prompt_tokens + max_new_tokens);
  return plan.DeviceBytes(geometry_.device.is_cuda(), geometry_.n_heads);
}

absl::Status AkvStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                       absl::Span<const SeqStep> steps, GroupTensors& t, const StepContext& ctx) {
  std::vector<AkvSequenceCache*> caches;
  caches.reserve(seqs.size());
  for (SequenceCache* c : seqs) {
    caches.push_back(static_cast<AkvSequenceCache*>(c));
    caches.back()->set_step_peers(static_cast<int64_t>(seqs.size()), side_.max_streams());
  }
  // Decode rows of several sequences: one append and one attention launch
  // over all of them (each row reads its own tiers).
  if (AkvBatchedDecodeApplies(layer, caches, steps, t)) return AkvBatchedDecode(layer, caches, steps, t, ctx);
  // Else each sequence's append, attention and score update on a side stream
  // of its own: they touch only that sequence's tiers and rows.
  const int device = t.q.is_cuda() ? t.q.get_device() : -1;
  return side_.ForEach(device, static_cast<int>(seqs.size()), [&](int i) {
    const int64_t row = t.row_offset[i], n = steps[i].n_new;
    at::Tensor out = t.out.narrow(0, row, n);
    return static_cast<AkvSequenceCache*>(seqs[i])->Attend(layer, t.q.narrow(0, row, n), t.k.narrow(0, row, n),
                                                           t.v.narrow(0, row, n), out, steps[i], ctx);
  });
}

absl::StatusOr<int64_t> AkvStrategy::PrepareDecode(absl::Span<SequenceCache* const> seqs,
                                                   absl::Span<const SeqStep> steps, int64_t padded_rows,
                                                   const StepContext& ctx) {
  std::vector<uint64_t> ids;
  ids.reserve(seqs.size() + 1);
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto* cache = static_cast<AkvSequenceCache*>(seqs[i]);
    cache->set_step_peers(static_cast<int64_t>(seqs.size()), side_.max_streams());
    KV_RETURN_IF_ERROR(cache->PrepareDecodeStep(steps[i], ctx));
    ids.push_back(cache->id());
  }
  ids.push_back(static_cast<uint64_t>(padded_rows));
  return keys_.KeyFor(std::move(ids));
}

}  // namespace kvstream
