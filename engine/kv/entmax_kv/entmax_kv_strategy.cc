#include "engine/kv/entmax_kv/entmax_kv_strategy.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/status_macros.h"
#include "kernels/entmax_kv/entmax_kv.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

constexpr int64_t P = PagedKvPool::kPageTokens;
constexpr double kBytes16 = 2.0;  // spec §3: bytes counted as a 16-bit cache (b_kv = 2)

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Host vector -> device tensor without blocking the host: staged in pinned
// memory (the caching host allocator keeps the block until the copy is done),
// copied on the current stream. On CPU an owned copy.
at::Tensor UploadAsync(const std::vector<int64_t>& v, const c10::Device& device) {
  at::Tensor host = at::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, at::kLong);
  if (!device.is_cuda()) return host.clone();
  return host.pin_memory().to(device, at::kLong, /*non_blocking=*/true, /*copy=*/true);
}

// Twin result (CPU) -> status.
absl::Status TwinStatus(bool ok, const char* why, const char* kernel, int64_t layer) {
  if (ok) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("entmax_kv ", kernel, " twin (layer ", layer, "): ",
                                          why ? why : "page id out of range"));
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH
absl::Status CudaStatus(cudaError_t e, const char* kernel, int64_t layer) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("entmax_kv ", kernel, " (layer ", layer, "): ", cudaGetErrorString(e)));
}
#endif

}  // namespace

// ---- stats store ------------------------------------------------------------------

int64_t EntmaxStatsStore::page_bytes() const {
  return 2 * geometry_.n_layers * geometry_.n_kv_heads * geometry_.head_dim *
         static_cast<int64_t>(c10::elementSize(geometry_.dtype));
}

void EntmaxStatsStore::EnsureAllocated(int64_t num_pages) {
  if (storage_.defined() || num_pages <= 0) return;
  auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
  storage_ = at::zeros({geometry_.n_layers, 2, num_pages, geometry_.n_kv_heads, geometry_.head_dim}, opts);
}

// ---- strategy --------------------------------------------------------------------

EntmaxKvStrategy::EntmaxKvStrategy(const KvGeometry& g, int64_t pool_bytes)
    : geometry_(g), stats_(std::make_shared<EntmaxStatsStore>(g)) {
  // The pool shares `pool_bytes` between K/V pages and their stats, so it is
  // sized in pages of (K/V + stats) bytes.
  KvGeometry kv = g;
  const int64_t kv_page = 2 * g.n_layers * g.n_kv_heads * P * g.head_dim *
                          static_cast<int64_t>(c10::elementSize(g.dtype));
  const int64_t bytes = pool_bytes > 0 ? pool_bytes / (kv_page + stats_->page_bytes()) * kv_page : 0;
  pool_ = std::make_shared<PagedKvPool>(kv, pool_bytes > 0 ? std::max<int64_t>(bytes, kv_page) : 0);
}

EntmaxKvStrategy::EntmaxKvStrategy(const KvGeometry& g, std::shared_ptr<PagedKvPool> shared_pool)
    : geometry_(g), pool_(std::move(shared_pool)), stats_(std::make_shared<EntmaxStatsStore>(g)) {}

absl::Status EntmaxKvStrategy::Validate(const StrategyConfig& config) const {
  KV_RETURN_IF_ERROR(ParseEntmaxKvConfig(config, geometry_.n_layers).status());
  if (!EntmaxKvSupports(static_cast<int>(geometry_.head_dim), KvDTypeOf(geometry_.dtype))) {
    return absl::FailedPreconditionError(
        absl::StrCat("kv_compression.entmax_kv: the kernels support head dim 64 or 128 in fp32 or bf16 (model has "
                     "head dim ",
                     geometry_.head_dim, ", dtype ", c10::toString(geometry_.dtype), ")"));
  }
  if (geometry_.n_kv_heads <= 0 || geometry_.n_heads % geometry_.n_kv_heads != 0) {
    return absl::FailedPreconditionError("kv_compression.entmax_kv: query heads must be a multiple of KV heads");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceCache>> EntmaxKvStrategy::Open(const StrategyConfig& config) {
  KV_RETURN_IF_ERROR(Validate(config));
  KV_ASSIGN_OR_RETURN(EntmaxKvConfig c, ParseEntmaxKvConfig(config, geometry_.n_layers));
  return std::make_unique<EntmaxKvSequenceCache>(pool_, stats_, c, config.max_tokens);
}

int64_t EntmaxKvStrategy::PredictBytes(const StrategyConfig&, int64_t prompt_tokens, int64_t max_new_tokens) const {
  return CeilDiv(prompt_tokens + max_new_tokens, P) * (pool_->page_bytes() + stats_->page_bytes());
}

// ---- sequence --------------------------------------------------------------------

EntmaxKvSequenceCache::EntmaxKvSequenceCache(std::shared_ptr<PagedKvPool> pool,
                                             std::shared_ptr<EntmaxStatsStore> stats, const EntmaxKvConfig& config,
                                             int64_t max_tokens)
    : pool_(std::move(pool)), stats_(std::move(stats)), config_(config), max_tokens_(max_tokens) {
  const KvGeometry& g = pool_->geometry();
  counters_.resize(static_cast<size_t>(g.n_layers));
  mass_error_max_ = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(g.device));
}

EntmaxKvSequenceCache::~EntmaxKvSequenceCache() { pool_->Give(pages_); }

absl::Status EntmaxKvSequenceCache::Grow(int64_t tokens) {
  const int64_t need = CeilDiv(tokens, P) - static_cast<int64_t>(pages_.size());
  if (need <= 0) return absl::OkStatus();
  KV_ASSIGN_OR_RETURN(std::vector<int32_t> got, pool_->Take(need));
  stats_->EnsureAllocated(pool_->num_pages());
  pages_.insert(pages_.end(), got.begin(), got.end());
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  return absl::OkStatus();
}

absl::Status EntmaxKvSequenceCache::UpdateStats(int64_t layer, int recent_pages) {
  const KvGeometry& g = pool_->geometry();
  EntmaxPageStatsParams p;
  p.kv.k_pool = pool_->keys(layer).const_data_ptr();
  p.kv.block_table = block_table_.const_data_ptr<int32_t>();
  p.kv.seq_lens = seq_lens_.const_data_ptr<int32_t>();
  p.kv.batch = 1;
  p.kv.num_kv_heads = static_cast<int>(g.n_kv_heads);
  p.kv.head_dim = static_cast<int>(g.head_dim);
  p.kv.page_size = static_cast<int>(P);
  p.kv.num_blocks = static_cast<int>(pool_->num_pages());
  p.kv.max_blocks_per_seq = static_cast<int>(block_table_.size(1));
  p.kv.dtype = KvDTypeOf(g.dtype);
  p.stats.kmin = stats_->kmin(layer).mutable_data_ptr();
  p.stats.kmax = stats_->kmax(layer).mutable_data_ptr();
  p.kind = EntmaxStatKind::kMinMax;
  p.recent_pages = recent_pages;
  if (g.device.is_cuda()) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    return CudaStatus(LaunchEntmaxPageStats(p, at::cuda::getCurrentCUDAStream()), "K1 page_stats", layer);
#else
    return absl::FailedPreconditionError("this build has no CUDA kernels");
#endif
  }
  return TwinStatus(EntmaxPageStatsRef(p), EntmaxPageStatsValidate(p), "K1 page_stats", layer);
}

absl::StatusOr<at::Tensor> EntmaxKvSequenceCache::Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                          const at::Tensor& v, const SeqStep& seq,
                                                          const StepContext&) {
  const int64_t n = q.size(1), past = length_;
  if (seq.start_pos != past) {
    return absl::InternalError(
        absl::StrCat("entmax_kv cache holds ", past, " tokens but the step starts at ", seq.start_pos));
  }
  const int64_t T = past + n;
  const KvGeometry& g = pool_->geometry();
  if (chunk_index_at_ != past) {
    KV_RETURN_IF_ERROR(Grow(T));
    if (n == 1 && g.device.is_cuda()) {
      // Decode: one asynchronous upload of [append slots (Hkv) | page ids (N) |
      // T] instead of MakePagedChunk's three blocking copies (no host sync per
      // step; issue 9).
      const int64_t Hkv = g.n_kv_heads, N = CeilDiv(T, P);
      std::vector<int64_t> buf(static_cast<size_t>(Hkv + N + 1));
      for (int64_t h = 0; h < Hkv; ++h) buf[h] = (static_cast<int64_t>(pages_[past / P]) * Hkv + h) * P + past % P;
      for (int64_t i = 0; i < N; ++i) buf[Hkv + i] = pages_[i];
      buf[Hkv + N] = T;
      const at::Tensor dev = UploadAsync(buf, g.device);
      chunk_.slots = dev.slice(0, 0, Hkv);
      chunk_.pages = dev.slice(0, Hkv, Hkv + N);
      const at::Tensor i32 = dev.slice(0, Hkv).to(at::kInt);  // pages | T, one device cast
      block_table_ = i32.slice(0, 0, N).view({1, -1});
      seq_lens_ = i32.slice(0, N, N + 1);
    } else {
      chunk_ = MakePagedChunk(pages_, past, n, g);
      block_table_ = chunk_.pages.to(at::kInt).view({1, -1});
      std::vector<int64_t> len = {T};
      seq_lens_ = HostToDevice(len, g.device, at::kInt);
    }
    chunk_index_at_ = past;
  }
  at::Tensor kpool = pool_->keys(layer), vpool = pool_->values(layer);
  AppendPagedChunk(kpool, vpool, chunk_, k, v);
  // K1: the pages this step touched (a chunk of n tokens touches at most
  // ceil(n/P) + 1; decode: the tail).
  KV_RETURN_IF_ERROR(UpdateStats(layer, n == 1 ? 1 : static_cast<int>(CeilDiv(n, P) + 1)));
  if (n == 1) return Decode(layer, q);
  at::Tensor keys = GatherPagedTokens(kpool, chunk_.pages, T), values = GatherPagedTokens(vpool, chunk_.pages, T);
  return CausalGqaAttention(q, keys, values, past);
}

absl::StatusOr<at::Tensor> EntmaxKvSequenceCache::Decode(int64_t layer, const at::Tensor& q_in) {
  const KvGeometry& g = pool_->geometry();
  const int64_t H = g.n_heads, Hkv = g.n_kv_heads, D = g.head_dim;
  const int64_t T = length_ + 1;
  const int64_t MB = block_table_.size(1);
  const int64_t Hs = config_.gqa_selection == EntmaxKvConfig::GqaSelection::kPerQueryHead ? H : Hkv;
  const bool dense_layer = layer < config_.dense_layers;
  const bool cuda = g.device.is_cuda();

  at::Tensor q = q_in.select(1, 0).contiguous();  // [H, D]
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(g.device);
  auto i32 = f32.dtype(at::kInt);
  // Not zero-filled: K2 writes every p < P_hist, the only entries K3 reads
  // (and K3's fallback reads none).
  at::Tensor u = at::empty({1, Hs, MB}, f32);
  at::Tensor sel_pages = at::empty({1, Hs, MB}, i32);
  at::Tensor page_count = at::empty({1, Hs}, i32);
  at::Tensor sel_len = at::empty({1, Hs}, i32);

  EntmaxPagedKv kv;
  kv.k_pool = pool_->keys(layer).const_data_ptr();
  kv.v_pool = pool_->values(layer).const_data_ptr();
  kv.block_table = block_table_.const_data_ptr<int32_t>();
  kv.seq_lens = seq_lens_.const_data_ptr<int32_t>();
  kv.batch = 1;
  kv.num_kv_heads = static_cast<int>(Hkv);
  kv.head_dim = static_cast<int>(D);
  kv.page_size = static_cast<int>(P);
  kv.num_blocks = static_cast<int>(pool_->num_pages());
  kv.max_blocks_per_seq = static_cast<int>(MB);
  kv.dtype = KvDTypeOf(g.dtype);
  EntmaxQuery query;
  query.q = q.const_data_ptr();
  query.stride_b = H * D;
  query.stride_h = D;
  query.num_heads = static_cast<int>(H);
  EntmaxSelection sel;
  sel.pages = sel_pages.mutable_data_ptr<int32_t>();
  sel.page_count = page_count.mutable_data_ptr<int32_t>();
  sel.sel_len = sel_len.mutable_data_ptr<int32_t>();
  sel.select_heads = static_cast<int>(Hs);

  // K2: page criticality (skipped where K3 falls back to every page anyway).
  const EntmaxSeqPages sp = EntmaxPagesOf(static_cast<int32_t>(T), static_cast<int>(P), static_cast<int>(MB));
  const bool fallback = dense_layer || T < config_.min_context || config_.budget_pages() >= sp.hist;
  EntmaxCriticalityParams cp;
  cp.kv = kv;
  cp.query = query;
  cp.stats.kmin = stats_->kmin(layer).mutable_data_ptr();
  cp.stats.kmax = stats_->kmax(layer).mutable_data_ptr();
  cp.u = u.mutable_data_ptr<float>();
  cp.select_heads = static_cast<int>(Hs);
  EntmaxTopkPackParams tp;
  tp.u = u.const_data_ptr<float>();
  tp.seq_lens = kv.seq_lens;
  tp.batch = 1;
  tp.page_size = static_cast<int>(P);
  tp.max_blocks_per_seq = static_cast<int>(MB);
  tp.sel = sel;
  tp.budget_pages = config_.budget_pages();
  tp.sink_pages = config_.sink_pages;
  tp.min_context = dense_layer ? INT32_MAX : static_cast<int>(config_.min_context);

  // The host knows T_sel (K3's counts follow from T): the score scratch, the
  // split plan and the decode's MT are sized by it (budget + tail), not MB*P.
  const int64_t n_hist = fallback ? sp.hist : std::min<int64_t>(config_.budget_pages(), sp.hist);
  const int64_t t_sel = n_hist * P + sp.tail_len;
  const int64_t MT = std::max<int64_t>(t_sel, 1);
  const bool fast = EntmaxSoftmaxFastPath(config_.alpha, static_cast<int>(H), static_cast<int>(Hs));
  at::Tensor scores = fast ? at::Tensor() : at::empty({1, H, MT}, f32);
  at::Tensor tau = at::empty({1, H}, f32);
  at::Tensor mass = at::empty({1, H}, f32);
  at::Tensor out = at::empty({H, D}, q.options());
  EntmaxSparseDecodeParams dp;
  dp.kv = kv;
  dp.query = query;
  dp.sel = sel;
  dp.out = out.mutable_data_ptr();
  dp.out_stride_b = H * D;
  dp.out_stride_h = D;
  dp.scores = fast ? nullptr : scores.mutable_data_ptr<float>();  // alpha-1 fast path: no scratch
  dp.max_sel_tokens = static_cast<int>(MT);
  dp.tau = tau.mutable_data_ptr<float>();
  dp.mass = mass.mutable_data_ptr<float>();
  dp.alpha = config_.alpha;
  dp.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  dp.niter = config_.niter;
  dp.correction_iters = config_.tau_correction_iters;
  dp.normalize_output = config_.normalize_output;
  dp.num_splits = 1;

  if (cuda) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    if (!fallback) KV_RETURN_IF_ERROR(CudaStatus(LaunchEntmaxCriticality(cp, stream), "K2 page_criticality", layer));
    KV_RETURN_IF_ERROR(CudaStatus(LaunchEntmaxTopkPack(tp, stream), "K3 topk_pack", layer));
    const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    dp.num_splits = fast ? PlanEntmaxSoftmaxDecodeSplits(1, static_cast<int>(Hs), static_cast<int>(MT), sms)
                         : PlanEntmaxSparseDecodeSplits(1, static_cast<int>(H), static_cast<int>(MT), sms);
    at::Tensor part, part_lse;
    if (dp.num_splits > 1) {
      part = at::empty({H * dp.num_splits * D}, f32);
      dp.partial_out = part.mutable_data_ptr<float>();
      if (fast) {
        part_lse = at::empty({H * dp.num_splits * 2}, f32);
        dp.partial_lse = part_lse.mutable_data_ptr<float>();
      }
    }
    KV_RETURN_IF_ERROR(CudaStatus(LaunchEntmaxSparseDecode(dp, stream), "K7 sparse_decode", layer));
#else
    return absl::FailedPreconditionError("this build has no CUDA kernels");
#endif
  } else {
    if (!fallback) {
      KV_RETURN_IF_ERROR(TwinStatus(EntmaxCriticalityRef(cp), EntmaxCriticalityValidate(cp), "K2", layer));
    }
    KV_RETURN_IF_ERROR(TwinStatus(EntmaxTopkPackRef(tp), EntmaxTopkPackValidate(tp), "K3", layer));
    KV_RETURN_IF_ERROR(TwinStatus(EntmaxSparseDecodeRef(dp), EntmaxSparseDecodeValidate(dp), "K7", layer));
  }
  mass_error_max_ = at::maximum(mass_error_max_, (mass - 1.0f).abs().max());

  // Host accounting (spec §3 / §8): the counts K3 makes, known from T alone.
  LayerCounters& c = counters_[static_cast<size_t>(layer)];
  const int64_t pages = n_hist + (sp.pages > 0 ? 1 : 0);
  const int64_t scored = fallback ? 0 : sp.hist;
  c.decode_steps += 1;
  c.fallback_steps += fallback ? 1 : 0;
  c.pages_selected += static_cast<double>(pages);
  c.pages_min = c.pages_min < 0 ? pages : std::min(c.pages_min, pages);
  c.pages_max = std::max(c.pages_max, pages);
  c.tokens_attended += static_cast<double>(t_sel);
  const double per_tok = static_cast<double>(Hkv * D) * 2 * kBytes16;  // K + V of one token
  c.metadata_read += static_cast<double>(scored) * static_cast<double>(Hkv * D) * 2 * kBytes16;
  c.bytes_read += static_cast<double>(t_sel) * per_tok;
  c.dense_read += static_cast<double>(T) * per_tok;
  return out.unsqueeze(1);  // [H, 1, D]
}

absl::Status EntmaxKvSequenceCache::EndStep(const SeqStep& seq, const StepContext&) {
  length_ += seq.n_new;
  return absl::OkStatus();
}

int64_t EntmaxKvSequenceCache::BytesHeld() const {
  return static_cast<int64_t>(pages_.size()) * (pool_->page_bytes() + stats_->page_bytes());
}

CacheReport EntmaxKvSequenceCache::Report() const {
  const KvGeometry& g = pool_->geometry();
  CacheReport r;
  r.strategy = "entmax_kv";
  r.kv_bytes_device = BytesHeld();
  r.tokens_seen = length_;
  r.tokens_held = length_;
  r.dense_equivalent_bytes = length_ * g.DenseBytesPerToken16();
  r.compression_ratio =
      r.kv_bytes_device > 0 ? static_cast<double>(r.dense_equivalent_bytes) / r.kv_bytes_device : 0.0;
  r.peak_kv_bytes = std::max(peak_bytes_, r.kv_bytes_device);
  LayerCounters all;
  int64_t head_steps = 0;
  for (int64_t l = 0; l < g.n_layers; ++l) {
    const LayerCounters& c = counters_[static_cast<size_t>(l)];
    LayerCacheReport lr;
    lr.layer = static_cast<int32_t>(l);
    const bool dense = l < config_.dense_layers || (c.decode_steps > 0 && c.fallback_steps == c.decode_steps);
    lr.detail = absl::StrCat(dense ? "dense" : "topk", ": ", pages_.size(), " pages of ", P, " tokens");
    lr.bytes = r.kv_bytes_device / g.n_layers;
    lr.tokens_held = length_;
    if (c.decode_steps > 0) {
      lr.stats["pages_selected_mean"] = c.pages_selected / static_cast<double>(c.decode_steps);
      lr.stats["read_fraction"] = c.dense_read > 0 ? (c.bytes_read + c.metadata_read) / c.dense_read : 1.0;
      lr.stats["dense_fallback_steps"] = static_cast<double>(c.fallback_steps);
    }
    r.layers.push_back(std::move(lr));
    all.decode_steps += c.decode_steps;
    all.fallback_steps += c.fallback_steps;
    all.pages_selected += c.pages_selected;
    all.tokens_attended += c.tokens_attended;
    all.bytes_read += c.bytes_read;
    all.metadata_read += c.metadata_read;
    all.dense_read += c.dense_read;
    if (c.decode_steps > 0) {
      all.pages_min = all.pages_min < 0 ? c.pages_min : std::min(all.pages_min, c.pages_min);
      all.pages_max = std::max(all.pages_max, c.pages_max);
    }
    head_steps += c.decode_steps;
  }
  const double steps = static_cast<double>(std::max<int64_t>(head_steps, 1));
  r.stats["pages_selected_mean"] = all.pages_selected / steps;
  r.stats["pages_selected_min"] = static_cast<double>(std::max<int64_t>(all.pages_min, 0));
  r.stats["pages_selected_max"] = static_cast<double>(all.pages_max);
  r.stats["tokens_attended_mean"] = all.tokens_attended / steps;
  r.stats["read_fraction"] = all.dense_read > 0 ? (all.bytes_read + all.metadata_read) / all.dense_read : 1.0;
  r.stats["metadata_read_fraction"] = all.dense_read > 0 ? all.metadata_read / all.dense_read : 0.0;
  // Decode (step, layer) pairs that attended every page.
  r.stats["dense_fallback_steps"] = static_cast<double>(all.fallback_steps);
  r.stats["tau_iters_mean"] = 0.0;  // alpha 1: tau is the log-sum-exp, no iterations
  r.stats["mass_error_max"] = static_cast<double>(mass_error_max_.item<float>());
  return r;
}

}  // namespace kvstream
