#include "engine/kv/dense/dense_cache.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

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

absl::Status DenseSequenceCache::CheckStart(int64_t layer, int64_t start_pos) const {
  if (start_pos == lengths_[layer]) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("dense cache layer ", layer, " holds ", lengths_[layer],
                                          " tokens but the step starts at ", start_pos));
}

absl::StatusOr<at::Tensor> DenseSequenceCache::Forward(int64_t layer, const at::Tensor& q,
                                                       const at::Tensor& k, const at::Tensor& v,
                                                       const SeqStep& seq, const StepContext&) {
  const int64_t n = q.size(1);
  const int64_t past = lengths_[layer];
  KV_RETURN_IF_ERROR(CheckStart(layer, seq.start_pos));
  Reserve(layer, past + n);
  keys_[layer].narrow(1, past, n).copy_(k);
  values_[layer].narrow(1, past, n).copy_(v);
  lengths_[layer] = past + n;
  const int64_t T = past + n;
  return CausalGqaAttention(q, keys_[layer].narrow(1, 0, T), values_[layer].narrow(1, 0, T), past);
}

namespace {

// [n, T] bool: query i (at position past + i) may see key j iff j <= past + i.
at::Tensor CausalMask(int64_t n, int64_t T, int64_t past, c10::Device device) {
  at::Tensor qi = at::arange(n, at::TensorOptions().device(device)).add_(past).view({n, 1});
  at::Tensor kj = at::arange(T, at::TensorOptions().device(device)).view({1, T});
  return kj.le(qi);
}

}  // namespace

at::Tensor CausalGqaAttention(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values, int64_t past) {
  // GQA without copying K/V: the G query heads of one KV head become G*n rows
  // of one attention problem over that head's keys.
  const int64_t H = q.size(0), n = q.size(1), D = q.size(2), Hkv = keys.size(0), G = H / Hkv;
  const int64_t T = keys.size(1);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  if (q.is_cuda() && n > 1) {
    // On the GPU SDPA's fused kernels need 4-D inputs with one KV head per
    // query head (3-D, or a mask with grouped rows, falls back to the math
    // path, which materializes [G*n, T] fp32 scores per KV head: 17 GB for a
    // 4K chunk over 32K keys). The K/V copy is H*T*D, small beside that.
    at::Tensor q4 = q.unsqueeze(0);
    at::Tensor k4 = (G > 1 ? keys.repeat_interleave(G, 0) : keys).unsqueeze(0);
    at::Tensor v4 = (G > 1 ? values.repeat_interleave(G, 0) : values).unsqueeze(0);
    at::Tensor o;
    if (past == 0 && T == n) {
      o = at::scaled_dot_product_attention(q4, k4, v4, std::nullopt, 0.0, /*is_causal=*/true, scale);  // flash
    } else {
      // Bottom-right aligned, which is_causal (top-left) does not express:
      // the memory-efficient kernel with the mask.
      o = at::scaled_dot_product_attention(q4, k4, v4, CausalMask(n, T, past, q.device()), 0.0, false, scale);
    }
    return o.squeeze(0);
  }
  at::Tensor qg = q.reshape({Hkv, G * n, D});
  std::optional<at::Tensor> mask;
  if (n > 1) mask = CausalMask(n, T, past, q.device()).repeat({G, 1});  // row (g, i): [G*n, T]
  at::Tensor o = at::scaled_dot_product_attention(qg, keys, values, mask, 0.0, false, scale);
  return o.view({H, n, D});
}

absl::StatusOr<int64_t> DenseSequenceCache::AppendOne(int64_t layer, int64_t start_pos, const float* k,
                                                      const float* v, int64_t head_stride) {
  const int64_t past = lengths_[layer];
  KV_RETURN_IF_ERROR(CheckStart(layer, start_pos));
  Reserve(layer, past + 1);
  const int64_t Hkv = geometry_.n_kv_heads, D = geometry_.head_dim, cap = keys_[layer].size(1);
  float* kd = keys_[layer].mutable_data_ptr<float>();
  float* vd = values_[layer].mutable_data_ptr<float>();
  for (int64_t h = 0; h < Hkv; ++h) {
    std::memcpy(kd + (h * cap + past) * D, k + h * head_stride, D * sizeof(float));
    std::memcpy(vd + (h * cap + past) * D, v + h * head_stride, D * sizeof(float));
  }
  lengths_[layer] = past + 1;
  return past + 1;
}

absl::Status DenseStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                         absl::Span<const SeqStep> steps, GroupTensors& t, const StepContext& ctx) {
  const bool fast = geometry_.device.is_cpu() && geometry_.dtype == at::kFloat && t.q.stride(2) == 1 &&
                    t.k.stride(2) == 1 && t.v.stride(2) == 1 && t.out.is_contiguous();
  std::vector<size_t> decode;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (fast && steps[i].n_new == 1) {
      decode.push_back(i);
      continue;
    }
    KV_RETURN_IF_ERROR(ForwardOneSequence(layer, seqs[i], steps[i], t.row_offset[i], t, ctx));
  }
  if (decode.empty()) return absl::OkStatus();
  const int64_t H = geometry_.n_heads, Hkv = geometry_.n_kv_heads, D = geometry_.head_dim, G = H / Hkv;
  std::vector<int64_t> lens(decode.size());
  for (size_t j = 0; j < decode.size(); ++j) {
    auto* c = static_cast<DenseSequenceCache*>(seqs[decode[j]]);
    const int64_t row = t.row_offset[decode[j]];
    KV_ASSIGN_OR_RETURN(lens[j], c->AppendOne(layer, steps[decode[j]].start_pos,
                                              t.k.const_data_ptr<float>() + row * t.k.stride(0),
                                              t.v.const_data_ptr<float>() + row * t.v.stride(0), t.k.stride(1)));
  }
  // One (sequence, query head) per task: exact softmax over the T held keys.
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  const int64_t tasks = static_cast<int64_t>(decode.size()) * H;
  // Score scratch made here, one slice per pool thread: allocating inside the
  // parallel region would give every OpenMP thread its own malloc arena.
  const int64_t max_t = *std::max_element(lens.begin(), lens.end());
  std::vector<float> scratch(static_cast<size_t>(at::get_num_threads() * max_t));
  at::parallel_for(0, tasks, 4, [&](int64_t b0, int64_t b1) {
    float* p = scratch.data() + at::get_thread_num() * max_t;
    for (int64_t task = b0; task < b1; ++task) {
      const size_t j = static_cast<size_t>(task / H);
      const int64_t h = task % H, kvh = h / G, T = lens[j], row = t.row_offset[decode[j]];
      const auto* c = static_cast<const DenseSequenceCache*>(seqs[decode[j]]);
      const float* q = t.q.const_data_ptr<float>() + row * t.q.stride(0) + h * t.q.stride(1);
      const float* K = c->keys(layer) + kvh * c->capacity(layer) * D;
      const float* V = c->values(layer) + kvh * c->capacity(layer) * D;
      float mx = -INFINITY;
      for (int64_t s = 0; s < T; ++s) {
        float dot = 0.f;
        for (int64_t d = 0; d < D; ++d) dot += q[d] * K[s * D + d];
        p[s] = dot * scale;
        mx = std::max(mx, p[s]);
      }
      float sum = 0.f;
      for (int64_t s = 0; s < T; ++s) sum += (p[s] = std::exp(p[s] - mx));
      float* out = t.out.mutable_data_ptr<float>() + (row * H + h) * D;
      std::fill(out, out + D, 0.f);
      const float inv = 1.f / sum;
      for (int64_t s = 0; s < T; ++s) {
        const float w = p[s] * inv;
        for (int64_t d = 0; d < D; ++d) out[d] += w * V[s * D + d];
      }
    }
  });
  return absl::OkStatus();
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
