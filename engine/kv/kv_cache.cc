#include "engine/kv/kv_cache.h"

#include <ATen/ATen.h>

#include "engine/status_macros.h"

namespace kvstream {

absl::Status ForwardOneSequence(int64_t layer, SequenceCache* seq, const SeqStep& step, int64_t row,
                                GroupTensors& t, const StepContext& ctx) {
  const int64_t n = step.rows();  // appended tokens + probe suffix (if any)
  // [n, H, D] -> [H, n, D]: the per-sequence contract is head-major.
  at::Tensor q = t.q.narrow(0, row, n).transpose(0, 1);
  at::Tensor k = t.k.narrow(0, row, n).transpose(0, 1);
  at::Tensor v = t.v.narrow(0, row, n).transpose(0, 1);
  KV_ASSIGN_OR_RETURN(at::Tensor o, seq->Forward(layer, q, k, v, step, ctx));
  t.out.narrow(0, row, n).copy_(o.transpose(0, 1));
  return absl::OkStatus();
}

absl::Status Strategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                    absl::Span<const SeqStep> steps, GroupTensors& t,
                                    const StepContext& ctx) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    KV_RETURN_IF_ERROR(ForwardOneSequence(layer, seqs[i], steps[i], t.row_offset[i], t, ctx));
  }
  return absl::OkStatus();
}

}  // namespace kvstream
