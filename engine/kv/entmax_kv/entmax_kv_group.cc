// EntmaxKvStrategy::ForwardGroup: the decode rows of a step that share one
// EntmaxKvConfig go through one launch of each kernel (the append, K1, K2, K3,
// K7 all take B sequences) instead of one sequence at a time: a prepared step
// (entmax_kv_prepared.cc) made here when the model runs the step eagerly. On
// the H100 a per-sequence step at (8, 32K) cost ~230 us per layer against ~78 us batched
// (bench/results/gpu/entmax_kv_decode_s12_h100.json, per_seq vs step).
// Prompt chunks, probe rows and decode rows with another config take the
// per-sequence path (EntmaxKvSequenceCache::Forward).
#include <ATen/ATen.h>

#include <algorithm>

#include "engine/kv/entmax_kv/entmax_kv_strategy.h"
#include "engine/status_macros.h"

namespace kvstream {

absl::Status EntmaxKvStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                            absl::Span<const SeqStep> steps, GroupTensors& t,
                                            const StepContext& ctx) {
  if (ctx.decode_prepared) {  // rows [0, padded) of the step, device work only (graph capture)
    const int64_t R = prepared_.rows;
    at::Tensor out = t.out.narrow(0, 0, R);
    return DecodeRows(layer, t.q.narrow(0, 0, R), t.k.narrow(0, 0, R), t.v.narrow(0, 0, R), out);
  }
  std::vector<size_t> batch, other;
  std::vector<EntmaxKvSequenceCache*> caches;
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto* c = static_cast<EntmaxKvSequenceCache*>(seqs[i]);
    const bool decode = steps[i].n_new == 1 && steps[i].n_probe == 0 && steps[i].start_pos == c->length();
    if (decode && (caches.empty() || EntmaxKernelScalars(caches.front()->config()) == EntmaxKernelScalars(c->config()))) {
      batch.push_back(i);
      caches.push_back(c);
    } else {
      other.push_back(i);
    }
  }
  if (batch.size() < 2) {  // one decode row: the per-sequence path is the same launches
    other.insert(other.end(), batch.begin(), batch.end());
    batch.clear();
  }
  for (size_t i : other) KV_RETURN_IF_ERROR(ForwardOneSequence(layer, seqs[i], steps[i], t.row_offset[i], t, ctx));
  if (batch.empty()) return absl::OkStatus();

  // The batch's host work is PrepareDecode's (its fixed buffers, rows not
  // padded), once per step; each layer then launches as a prepared step does.
  const int64_t B = static_cast<int64_t>(batch.size());
  if (layer == 0 || prepared_.step != ctx.step || prepared_.rows != B) {
    std::vector<SeqStep> batch_steps;
    for (size_t i : batch) batch_steps.push_back(steps[i]);
    std::vector<SequenceCache*> batch_seqs(caches.begin(), caches.end());
    KV_RETURN_IF_ERROR(PrepareDecode(batch_seqs, batch_steps, B, ctx).status());
  }
  // The batch's rows of the step: a slice when contiguous, else gathered.
  bool contiguous = true;
  for (int64_t j = 0; j < B; ++j) contiguous = contiguous && t.row_offset[batch[j]] == t.row_offset[batch[0]] + j;
  at::Tensor q, k, v, out, idx;
  if (contiguous) {
    const int64_t r0 = t.row_offset[batch[0]];
    q = t.q.narrow(0, r0, B), k = t.k.narrow(0, r0, B), v = t.v.narrow(0, r0, B), out = t.out.narrow(0, r0, B);
  } else {
    std::vector<int64_t> rows;
    for (size_t i : batch) rows.push_back(t.row_offset[i]);
    idx = HostToDevice(rows, geometry_.device);
    q = t.q.index_select(0, idx), k = t.k.index_select(0, idx), v = t.v.index_select(0, idx);
    out = at::empty_like(q);
  }
  KV_RETURN_IF_ERROR(DecodeRows(layer, q, k, v, out));
  if (!contiguous) t.out.index_copy_(0, idx, out);
  return absl::OkStatus();
}

}  // namespace kvstream
