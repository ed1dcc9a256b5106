#include "engine/kv/dense/dense_cache.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace kvstream {

absl::Status DenseStrategy::Validate(const StrategyConfig& config) const {
  if (!config.knobs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("kv_compression.dense has no knobs (got '",
                                                   config.knobs.begin()->first, "')"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceCache>> DenseStrategy::Open(const StrategyConfig& config) {
  if (absl::Status s = Validate(config); !s.ok()) return s;
  return std::make_unique<DenseSequenceCache>(geometry_, config.max_tokens);
}

int64_t DenseStrategy::PredictBytes(const StrategyConfig&, int64_t prompt_tokens,
                                    int64_t max_new_tokens) const {
  const int64_t tokens = prompt_tokens + max_new_tokens;
  const int64_t blocks = (tokens + kBlockTokens - 1) / kBlockTokens;
  return blocks * kBlockTokens * 2 * geometry_.n_layers * geometry_.n_kv_heads *
         geometry_.head_dim * static_cast<int64_t>(c10::elementSize(geometry_.dtype));
}

DenseSequenceCache::DenseSequenceCache(const KvGeometry& g, int64_t max_tokens)
    : geometry_(g), max_tokens_(max_tokens), keys_(g.n_layers), values_(g.n_layers), lengths_(g.n_layers, 0) {}

void DenseSequenceCache::Reserve(int64_t layer, int64_t tokens) {
  const int64_t have = keys_[layer].defined() ? keys_[layer].size(1) : 0;
  if (tokens <= have) return;
  const int64_t block = DenseStrategy::kBlockTokens;
  auto round_up = [&](int64_t t) { return (t + block - 1) / block * block; };
  int64_t cap = round_up(std::max(tokens, have + have / 2));
  if (max_tokens_ > 0) cap = std::max(round_up(tokens), std::min(cap, round_up(max_tokens_)));
  auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
  at::Tensor k = at::empty({geometry_.n_kv_heads, cap, geometry_.head_dim}, opts);
  at::Tensor v = at::empty({geometry_.n_kv_heads, cap, geometry_.head_dim}, opts);
  const int64_t len = lengths_[layer];
  if (len > 0) {
    k.narrow(1, 0, len).copy_(keys_[layer].narrow(1, 0, len));
    v.narrow(1, 0, len).copy_(values_[layer].narrow(1, 0, len));
  }
  keys_[layer] = std::move(k);
  values_[layer] = std::move(v);
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
}

absl::StatusOr<at::Tensor> DenseSequenceCache::Forward(int64_t layer, const at::Tensor& q,
                                                       const at::Tensor& k, const at::Tensor& v,
                                                       const SeqStep& seq, const StepContext&) {
  const int64_t n = q.size(1);
  const int64_t past = lengths_[layer];
  if (seq.start_pos != past) {
    return absl::InternalError(absl::StrCat("dense cache layer ", layer, " holds ", past,
                                            " tokens but the step starts at ", seq.start_pos));
  }
  Reserve(layer, past + n);
  keys_[layer].narrow(1, past, n).copy_(k);
  values_[layer].narrow(1, past, n).copy_(v);
  lengths_[layer] = past + n;
  const int64_t T = past + n;

  // GQA without copying K/V: the G query heads of one KV head become G*n rows
  // of one attention problem over that head's keys.
  const int64_t H = q.size(0), D = q.size(2), Hkv = geometry_.n_kv_heads, G = H / Hkv;
  at::Tensor qg = q.reshape({Hkv, G * n, D});
  at::Tensor keys = keys_[layer].narrow(1, 0, T);
  at::Tensor values = values_[layer].narrow(1, 0, T);
  std::optional<at::Tensor> mask;
  if (n > 1) {
    // Row (g, i) may see key j iff j <= past + i.
    at::Tensor qi = at::arange(n, at::TensorOptions().device(q.device())).add_(past).view({n, 1});
    at::Tensor kj = at::arange(T, at::TensorOptions().device(q.device())).view({1, T});
    mask = kj.le(qi).repeat({G, 1});  // [G*n, T]
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  at::Tensor o = at::scaled_dot_product_attention(qg, keys, values, mask, 0.0, false, scale);
  return o.view({H, n, D});
}

int64_t DenseSequenceCache::BytesHeld() const {
  int64_t bytes = 0;
  for (size_t l = 0; l < keys_.size(); ++l) {
    if (keys_[l].defined()) bytes += keys_[l].nbytes() + values_[l].nbytes();
  }
  return bytes;
}

CacheReport DenseSequenceCache::Report() const {
  CacheReport r;
  r.strategy = "dense";
  r.kv_bytes_device = BytesHeld();
  r.tokens_seen = lengths_.empty() ? 0 : *std::max_element(lengths_.begin(), lengths_.end());
  r.tokens_held = r.tokens_seen;
  r.dense_equivalent_bytes = r.tokens_seen * geometry_.DenseBytesPerToken16();
  r.compression_ratio =
      r.kv_bytes_device > 0 ? static_cast<double>(r.dense_equivalent_bytes) / r.kv_bytes_device : 0.0;
  r.peak_kv_bytes = std::max(peak_bytes_, r.kv_bytes_device);
  for (size_t l = 0; l < keys_.size(); ++l) {
    LayerCacheReport lr;
    lr.layer = static_cast<int32_t>(l);
    lr.detail = "dense";
    lr.bytes = keys_[l].defined() ? keys_[l].nbytes() + values_[l].nbytes() : 0;
    lr.tokens_held = lengths_[l];
    r.layers.push_back(std::move(lr));
  }
  return r;
}

}  // namespace kvstream
