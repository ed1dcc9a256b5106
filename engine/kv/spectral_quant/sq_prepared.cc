// SpectralQuant decode steps as device work only, so they can replay from
// captured CUDA graphs (sq_strategy.h). Once the recent window is full
// (mode a) every decode step does the same thing in every layer: the oldest
// window token leaves, K1 codes it into the next record, the new token takes
// its slot (the window is a ring, sq_cache.cc), and K2 attends over the
// records, the sinks and the whole window. What changes from step to step
// is three numbers, and they live in device memory:
//   meta_ int32 {records before the step (K1's first_token),
//                records after it (K2's num_keys_live)}
//   slot_ int64 {the window slot the step's token takes}
// uploaded from fresh pinned buffers on the step's stream before the launch
// or replay. K2 plans its splits on the records' capacity (reserved for the
// whole request before the first prepared step) and masks nothing (every
// held key precedes the query), so eager and replayed steps run the same
// launches. EndStep books the token on the host.
#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/kv/spectral_quant/sq_strategy.h"
#include "engine/status_macros.h"

namespace kvstream {

bool SpectralQuantSequenceCache::CanDecodeOnDevice() const {
  if (!geometry_.device.is_cuda() || !prompt_done_ || !config_.compress_decode_tokens || recent_ <= 0) return false;
  for (const Layer& L : layers_) {
    if (L.dev == nullptr || L.n_sink != config_.num_sink_tokens || L.n_dense != recent_ ||
        !L.k_tail.defined() || L.k_tail.size(0) != recent_) {
      return false;
    }
  }
  return true;
}

int64_t SpectralQuantSequenceCache::records_capacity() const {
  return layers_.empty() || !layers_[0].k_rec.defined() ? 0 : layers_[0].k_rec.size(0);
}

absl::Status SpectralQuantSequenceCache::PrepareDecodeStep(const SeqStep& seq, const StepContext&) {
  if (seq.n_new != 1 || seq.n_probe != 0 || seq.is_prompt || seq.start_pos != tokens_seen_ || !CanDecodeOnDevice()) {
    return absl::InternalError(absl::StrCat("spectral_quant: a prepared decode step at ", seq.start_pos, " with ",
                                            seq.n_new, " new tokens, the cache has seen ", tokens_seen_,
                                            CanDecodeOnDevice() ? "" : " and cannot decode on the device"));
  }
  try {
    // Records for the rest of the request at once, so a captured graph's
    // pointers stay valid (with max_tokens known they are already there).
    const int64_t rest = max_tokens_ > 0 ? std::max<int64_t>(max_tokens_ - tokens_seen_, 1) : 1;
    for (int64_t l = 0; l < static_cast<int64_t>(layers_.size()); ++l) {
      KV_RETURN_IF_ERROR(ReserveRecords(l, layers_[l].n_comp + rest));
    }
    // The counts, from fresh pinned buffers: the caching host allocator
    // keeps each until the copy that reads it has run, so a later step
    // cannot overwrite it. Every layer holds the same counts.
    const int64_t n_comp = layers_[0].n_comp;
    at::Tensor meta = at::empty({2}, at::TensorOptions().dtype(at::kInt).pinned_memory(true));
    meta.mutable_data_ptr<int32_t>()[0] = static_cast<int32_t>(n_comp);
    meta.mutable_data_ptr<int32_t>()[1] = static_cast<int32_t>(n_comp + 1);
    at::Tensor slot = at::empty({1}, at::TensorOptions().dtype(at::kLong).pinned_memory(true));
    slot.mutable_data_ptr<int64_t>()[0] = n_comp % recent_;  // the oldest entry's slot
    if (!meta_.defined()) {
      meta_ = at::empty({2}, at::TensorOptions().dtype(at::kInt).device(geometry_.device));
      slot_ = at::empty({1}, at::TensorOptions().dtype(at::kLong).device(geometry_.device));
    }
    meta_.copy_(meta, /*non_blocking=*/true);
    slot_.copy_(slot, /*non_blocking=*/true);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("spectral_quant: prepared decode: ", e.what_without_backtrace()));
  }
  meta_pos_ = seq.start_pos;
  device_step_pending_ = true;  // EndStep books it (a replay runs no Forward)
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> SpectralQuantSequenceCache::DecodeOnDevice(int64_t layer, const at::Tensor& q,
                                                                      const at::Tensor& k, const at::Tensor& v) {
  Layer& L = layers_[layer];
  try {
    // The oldest window token leaves for record meta_[0] ...
    const at::Tensor old_k = L.k_tail.index_select(0, slot_), old_v = L.v_tail.index_select(0, slot_);
    const at::Tensor first = meta_.narrow(0, 0, 1), live = meta_.narrow(0, 1, 1);
    KV_RETURN_IF_ERROR(Compress(layer, old_k.transpose(0, 1), old_v.transpose(0, 1), &first));
    // ... and the new one takes its slot (k/v [Hkv, 1, D] -> [1, Hkv, D]).
    L.k_tail.index_copy_(0, slot_, k.transpose(0, 1).to(L.k_tail.scalar_type()));
    L.v_tail.index_copy_(0, slot_, v.transpose(0, 1).to(L.v_tail.scalar_type()));
    return Attend(layer, q, 0, DenseSegment(layer, L.k_tail, L.v_tail, 0, /*positions=*/false), &live);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("spectral_quant layer ", layer, " device decode: ", e.what_without_backtrace()));
  }
}

absl::Status SpectralQuantSequenceCache::EndStep(const SeqStep& seq, const StepContext&) {
  if (!device_step_pending_) return absl::OkStatus();
  // The device step coded one window token into a record in every layer.
  for (Layer& L : layers_) ++L.n_comp;
  tokens_seen_ = layers_[0].n_sink + layers_[0].n_comp + layers_[0].n_dense;
  device_step_pending_ = false;
  ++device_decode_steps_;
  if (tokens_seen_ != seq.start_pos + seq.n_new) {
    return absl::InternalError(absl::StrCat("spectral_quant: a device decode step at ", seq.start_pos,
                                            " left the cache at ", tokens_seen_, " tokens"));
  }
  return absl::OkStatus();
}

absl::Status SpectralQuantStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                                 absl::Span<const SeqStep> steps, GroupTensors& t,
                                                 const StepContext& ctx) {
  // Side streams only for device steps: every buffer they write is reserved
  // beforehand on the caller's stream (a buffer grown inside a branch would
  // be freed to the caching allocator while another stream's branch could
  // take it back before this branch's copy out of it ran).
  bool decode = t.q.is_cuda() && seqs.size() > 1;
  for (size_t i = 0; i < seqs.size(); ++i) {
    decode = decode && steps[i].n_new == 1 && steps[i].n_probe == 0 && !steps[i].is_prompt &&
             (ctx.decode_prepared || static_cast<const SpectralQuantSequenceCache*>(seqs[i])->CanDecodeOnDevice());
  }
  if (!decode) return Strategy::ForwardGroup(layer, seqs, steps, t, ctx);
  if (!ctx.decode_prepared && layer == 0) {  // eager: what PrepareDecode does before a replay
    for (size_t i = 0; i < seqs.size(); ++i) {
      KV_RETURN_IF_ERROR(static_cast<SpectralQuantSequenceCache*>(seqs[i])->PrepareDecodeStep(steps[i], ctx));
    }
  }
  return side_.ForEach(t.q.get_device(), static_cast<int>(seqs.size()), [&](int i) {
    return ForwardOneSequence(layer, seqs[i], steps[i], t.row_offset[i], t, ctx);
  });
}

bool SpectralQuantStrategy::CanPrepareDecode(absl::Span<SequenceCache* const> seqs) const {
  for (SequenceCache* s : seqs) {
    if (!static_cast<const SpectralQuantSequenceCache*>(s)->CanDecodeOnDevice()) return false;
  }
  return !seqs.empty();
}

absl::StatusOr<int64_t> SpectralQuantStrategy::PrepareDecode(absl::Span<SequenceCache* const> seqs,
                                                             absl::Span<const SeqStep> steps, int64_t padded_rows,
                                                             const StepContext& ctx) {
  std::vector<uint64_t> key;
  key.reserve(2 * seqs.size() + 1);
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto* cache = static_cast<SpectralQuantSequenceCache*>(seqs[i]);
    KV_RETURN_IF_ERROR(cache->PrepareDecodeStep(steps[i], ctx));
    key.push_back(cache->id());
    key.push_back(static_cast<uint64_t>(cache->records_capacity()));  // records moved: a new graph
  }
  key.push_back(static_cast<uint64_t>(padded_rows));
  return keys_.KeyFor(std::move(key));
}

}  // namespace kvstream
