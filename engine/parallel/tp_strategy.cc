#include "engine/parallel/tp_strategy.h"

#include <c10/core/DeviceGuard.h>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace kvstream {

TpSequenceCache::~TpSequenceCache() {
  for (size_t r = 0; r < ranks_.size(); ++r) {
    c10::DeviceGuard device(devices_[r]);  // its streams and events are destroyed on their device
    ranks_[r].reset();
  }
}

absl::StatusOr<at::Tensor> TpSequenceCache::Forward(int64_t, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const SeqStep&, const StepContext&) {
  return absl::InternalError("tensor parallelism: attention must run on a rank's cache, not the group's");
}

absl::Status TpSequenceCache::EndStep(const SeqStep& seq, const StepContext& ctx) {
  for (size_t r = 0; r < ranks_.size(); ++r) {
    c10::DeviceGuard device(devices_[r]);
    KV_RETURN_IF_ERROR(ranks_[r]->EndStep(seq, ctx));
  }
  return absl::OkStatus();
}

std::optional<PrefillPlan> TpSequenceCache::NextPrefill(int64_t prompt_done, int64_t prompt_len) const {
  for (size_t r = 1; r < ranks_.size(); ++r) ranks_[r]->NextPrefill(prompt_done, prompt_len);
  return ranks_[0]->NextPrefill(prompt_done, prompt_len);
}

int64_t TpSequenceCache::BytesHeld() const {
  int64_t b = 0;
  for (const auto& c : ranks_) b += c->BytesHeld();
  return b;
}

int64_t TpSequenceCache::DeviceBytesHeld() const {
  int64_t b = 0;
  for (const auto& c : ranks_) b += c->DeviceBytesHeld();
  return b;
}

CacheReport TpSequenceCache::Report() const {
  // Rank 0's report (tokens, per-layer detail, stats) with the bytes of every
  // rank: each holds its own KV heads of the same tokens.
  CacheReport r = ranks_[0]->Report();
  for (size_t i = 1; i < ranks_.size(); ++i) {
    const CacheReport o = ranks_[i]->Report();
    r.kv_bytes_device += o.kv_bytes_device;
    r.kv_bytes_host += o.kv_bytes_host;
    r.dense_equivalent_bytes += o.dense_equivalent_bytes;
    r.peak_kv_bytes += o.peak_kv_bytes;
    r.compression_ms += o.compression_ms;
    for (size_t l = 0; l < r.layers.size() && l < o.layers.size(); ++l) r.layers[l].bytes += o.layers[l].bytes;
  }
  const int64_t held = r.kv_bytes_device + r.kv_bytes_host;
  r.compression_ratio = held > 0 ? static_cast<double>(r.dense_equivalent_bytes) / static_cast<double>(held) : 0.0;
  r.stats["tensor_parallel_ranks"] = static_cast<double>(ranks_.size());
  return r;
}

absl::StatusOr<std::unique_ptr<SequenceCache>> TpStrategy::Open(const StrategyConfig& config) {
  std::vector<std::unique_ptr<SequenceCache>> caches;
  for (size_t r = 0; r < ranks_.size(); ++r) {
    c10::DeviceGuard device(devices_[r]);
    KV_ASSIGN_OR_RETURN(std::unique_ptr<SequenceCache> c, ranks_[r]->Open(config));
    caches.push_back(std::move(c));
  }
  return std::make_unique<TpSequenceCache>(std::move(caches), devices_);
}

absl::Status TpStrategy::ForwardGroup(int64_t, absl::Span<SequenceCache* const>, absl::Span<const SeqStep>,
                                      GroupTensors&, const StepContext&) {
  return absl::InternalError(absl::StrCat("tensor parallelism: ", name(), " must run per rank"));
}

}  // namespace kvstream
