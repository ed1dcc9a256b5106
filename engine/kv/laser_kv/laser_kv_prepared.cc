// LASER-KV decode steps from captured CUDA graphs (laser_kv.md §4.5: decode
// is never recompressed, so a decode step is dense attention over C plus the
// new token). Everything a graph bakes in stays fixed across replays:
//   - C is grown once, at the first prepared step, for the request's
//     remaining tokens (prompt + max_new is known), so ck_/cv_ never move;
//   - the step's length lives in prepared_meta_ (block table {0}, seq_lens
//     {c_len + 1}), copied from pinned memory on the step's stream before
//     the replay; the dense decode kernel's fused append stores the new K/V
//     at row seq_lens - 1 itself, so no host offset enters the graph;
//   - splits are planned on C's capacity, not the live length.
// Forward does device work only; EndStep books the appended token.
#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/kv/laser_kv/laser_kv_strategy.h"
#include "engine/status_macros.h"
#include "kernels/dense/dense_decode.h"

namespace kvstream {

absl::Status LaserKvStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                           absl::Span<const SeqStep> steps, GroupTensors& t,
                                           const StepContext& ctx) {
  bool decode = t.q.is_cuda() && seqs.size() > 1;
  for (const SeqStep& s : steps) decode = decode && s.n_new == 1 && s.n_probe == 0;
  if (!decode) return Strategy::ForwardGroup(layer, seqs, steps, t, ctx);  // prefill: in order
  return side_.ForEach(t.q.get_device(), static_cast<int>(seqs.size()), [&](int i) {
    return ForwardOneSequence(layer, seqs[i], steps[i], t.row_offset[i], t, ctx);
  });
}

bool LaserKvStrategy::CanPrepareDecode(absl::Span<SequenceCache* const>) const {
  return DenseDecodeSupports(static_cast<int>(geometry_.head_dim), KvDTypeOf(geometry_.dtype));
}

absl::StatusOr<int64_t> LaserKvStrategy::PrepareDecode(absl::Span<SequenceCache* const> seqs,
                                                       absl::Span<const SeqStep> steps, int64_t padded_rows,
                                                       const StepContext& ctx) {
  std::vector<uint64_t> key;
  key.reserve(2 * seqs.size() + 1);
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto* cache = static_cast<LaserKvSequenceCache*>(seqs[i]);
    KV_RETURN_IF_ERROR(cache->PrepareDecodeStep(steps[i], ctx));
    key.push_back(cache->id());
    key.push_back(static_cast<uint64_t>(cache->capacity()));  // C moved: a new graph
  }
  key.push_back(static_cast<uint64_t>(padded_rows));
  return keys_.KeyFor(std::move(key));
}

absl::Status LaserKvSequenceCache::PrepareDecodeStep(const SeqStep& seq, const StepContext& ctx) {
  if (seq.n_new != 1 || seq.n_probe != 0 || seq.start_pos != tokens_seen_) {
    return absl::InternalError(absl::StrCat("laser_kv: prepared decode step at ", seq.start_pos, " with ",
                                            seq.n_new, " new tokens, the cache has seen ", tokens_seen_));
  }
  // The rest of the request at once (C is only written by decode from here on).
  const int64_t rest = max_tokens_ > 0 ? std::max<int64_t>(max_tokens_ - tokens_seen_, 1) : 1;
  EnsureCapacity(c_len_ + rest);
  if (!prepared_meta_.defined()) {
    prepared_meta_ = at::zeros({2}, at::TensorOptions().dtype(at::kInt).device(geometry_.device));
  }
  prepared_meta_.copy_(DecodeMetaHost(), /*non_blocking=*/true);  // before the replay, on its stream
  prepared_step_ = ctx.step;
  prepared_pending_ = true;
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> LaserKvSequenceCache::PreparedDecode(int64_t layer, const at::Tensor& q,
                                                                const at::Tensor& k, const at::Tensor& v,
                                                                const SeqStep& seq, const StepContext& ctx) {
  if (prepared_step_ != ctx.step || !prepared_meta_.defined() || seq.n_new != 1 || seq.n_probe != 0) {
    return absl::InternalError(absl::StrCat("laser_kv: decode step ", ctx.step, " was not prepared"));
  }
  return DecodeOnDevice(layer, q, k, v, prepared_meta_);
}

}  // namespace kvstream
