// AKV cache report (akv.md §8) and test snapshots. Bytes come from the
// buffers really allocated: tier tensors, scratch held between steps, cold
// blocks on the host.
#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/kv/akv/akv_cache.h"

namespace kvstream {

CacheReport AkvSequenceCache::Report() const {
  // Cold rows may still be in flight on CUDA: file them so the report counts
  // them (the request is over, so waiting here costs no step any time).
  (void)const_cast<AkvSequenceCache*>(this)->Flush();
  const int32_t* c = HostCounts();
  CacheReport r;
  r.strategy = "akv";
  const int64_t host_scratch = AkvCudaStateHostBytes(cuda_.get()) + AkvScanCudaHostBytes(scan_cuda_.get());
  r.kv_bytes_device = DeviceBytesHeld();
  r.kv_bytes_host = (cold_ ? cold_->Bytes() : 0) + host_scratch;
  r.tokens_seen = seen_;
  r.dense_equivalent_bytes = seen_ * geometry_.DenseBytesPerToken16();
  const int64_t held = r.kv_bytes_device + r.kv_bytes_host;
  r.compression_ratio = held > 0 ? static_cast<double>(r.dense_equivalent_bytes) / static_cast<double>(held) : 0.0;
  r.peak_kv_bytes = std::max(peak_bytes_, BytesHeld()) + host_scratch;
  r.compression_ms = compression_ms_;

  std::vector<int32_t> dense_counts;
  if (dense_.num_layers > 0) {
    at::Tensor dc = dense_.counts.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
    dense_counts.assign(dc.const_data_ptr<int32_t>(), dc.const_data_ptr<int32_t>() + dc.numel());
  }
  auto& st = r.stats;
  for (const char* k : {"tokens_hot", "tokens_warm", "tokens_cold", "tokens_evicted", "demotions_hot_to_warm",
                        "demotions_warm_to_cold", "evictions", "promotions_warm_to_hot", "promotions_cold_to_warm",
                        "promotions_capped", "demotion_events", "hot_overflow", "quant_saturations", "cold_scans",
                        "h2d_bytes"}) {
    st[k] = 0.0;
  }
  const int64_t m_layers = std::max(plan_.managed_layers, 1);
  const int64_t m_hot = managed_.BytesHot() / m_layers, m_warm = managed_.BytesWarm() / m_layers;
  const int64_t m_meta = managed_.BytesMetadata() / m_layers;
  const int64_t d_layers = std::max(plan_.dense_layers, 1);
  for (int64_t l = 0; l < geometry_.n_layers; ++l) {
    LayerCacheReport lr;
    lr.layer = static_cast<int32_t>(l);
    const int idx = plan_.Index(l);
    int64_t hot, warm = 0, cold = 0, evicted = 0, bytes_hot, bytes_warm = 0, bytes_cold = 0, bytes_meta;
    if (plan_.IsManaged(l)) {
      const int32_t* lc = c + int64_t(idx) * kAkvCountSlots;
      hot = lc[kAkvNHot];
      warm = lc[kAkvNWarm];
      cold = cold_ ? cold_->Rows(idx) : 0;
      evicted = lc[kAkvTotCold] - cold - cold_promoted_[idx];  // rows that went cold and are neither there nor back
      bytes_hot = m_hot;
      bytes_warm = m_warm;
      bytes_meta = m_meta;
      if (cold_) {
        bytes_cold = (cold + kAkvColdBlockRows - 1) / kAkvColdBlockRows * kAkvColdBlockRows * cold_->BytesPerRow();
      }
      st["demotions_hot_to_warm"] += lc[kAkvTotDemoted];
      st["demotions_warm_to_cold"] += static_cast<double>(cold + cold_promoted_[idx]);
      st["promotions_cold_to_warm"] += static_cast<double>(cold_promoted_[idx]);
      st["evictions"] += static_cast<double>(evicted);
      st["promotions_warm_to_hot"] += lc[kAkvTotPromoted];
      st["promotions_capped"] += lc[kAkvTotPromoteCapped];
      st["demotion_events"] += lc[kAkvTotDemotionEvents];
      st["hot_overflow"] += lc[kAkvTotHotOverflow];
      st["quant_saturations"] += lc[kAkvTotQuantSaturations];
      lr.detail = absl::StrCat("hot=", hot, " warm=", warm, " cold=", cold, " evicted=", evicted);
    } else {
      hot = dense_counts[static_cast<size_t>(idx) * kAkvCountSlots + kAkvNHot];
      bytes_hot = dense_.BytesHot() / d_layers;
      bytes_meta = dense_.BytesMetadata() / d_layers;
      lr.detail = absl::StrCat("protected: hot=", hot);
    }
    lr.tokens_held = hot + warm + cold;
    lr.bytes = bytes_hot + bytes_warm + bytes_cold + bytes_meta;
    lr.stats = {{"hot", double(hot)},           {"warm", double(warm)},
                {"cold", double(cold)},         {"evicted", double(evicted)},
                {"bytes_hot", double(bytes_hot)}, {"bytes_warm", double(bytes_warm)},
                {"bytes_cold", double(bytes_cold)}};
    st["tokens_hot"] += static_cast<double>(hot);
    st["tokens_warm"] += static_cast<double>(warm);
    st["tokens_cold"] += static_cast<double>(cold);
    st["tokens_evicted"] += static_cast<double>(evicted);
    r.tokens_held = std::max(r.tokens_held, lr.tokens_held);
    r.layers.push_back(std::move(lr));
  }
  st["quant_saturations"] += static_cast<double>(cold_saturations_);
  st["cold_scans"] = static_cast<double>(cold_scans_);
  st["bytes_hot"] = static_cast<double>(managed_.BytesHot() + dense_.BytesHot());
  st["bytes_warm"] = static_cast<double>(managed_.BytesWarm());
  st["bytes_cold"] = static_cast<double>(cold_ ? cold_->Bytes() : 0);
  st["bytes_metadata"] = static_cast<double>(r.kv_bytes_device + host_scratch - managed_.BytesHot() -
                                             dense_.BytesHot() - managed_.BytesWarm());
  st["d2h_bytes"] = static_cast<double>(d2h_bytes_);
  st["h2d_bytes"] = static_cast<double>(h2d_bytes_);
  return r;
}

AkvSequenceCache::TierSnapshot AkvSequenceCache::Snapshot(int index) {
  TierSnapshot s;
  (void)Flush();
  const int32_t* lc = HostCounts() + int64_t(index) * kAkvCountSlots;
  auto host = [](const at::Tensor& t, int64_t n) {
    at::Tensor h = t.narrow(0, 0, n).to(at::kCPU, /*non_blocking=*/false, /*copy=*/true);
    return std::vector<int32_t>(h.const_data_ptr<int32_t>(), h.const_data_ptr<int32_t>() + n);
  };
  s.hot_pos = host(managed_.hot_pos[index], lc[kAkvNHot]);
  if (managed_.warm_pos.defined()) s.warm_pos = host(managed_.warm_pos[index], lc[kAkvNWarm]);
  const int64_t cold = cold_ ? cold_->Rows(index) : 0;
  for (int64_t i = 0; i < cold; ++i) s.cold_pos.push_back(cold_->Pos(index, i));
  s.evicted = lc[kAkvTotCold] - cold - cold_promoted_[index];
  s.hot_overflow = lc[kAkvTotHotOverflow];
  s.promoted = lc[kAkvTotPromoted];
  s.promote_capped = lc[kAkvTotPromoteCapped];
  return s;
}

}  // namespace kvstream
