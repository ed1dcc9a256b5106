#include "engine/kv/entmax_kv/entmax_kv_strategy.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/status_macros.h"
#include "engine/kv/entmax_kv/entmax_kv_decode.h"
#include "kernels/entmax_kv/entmax_kv.h"

namespace kvstream {
namespace {

constexpr int64_t P = PagedKvPool::kPageTokens;
constexpr double kBytes16 = 2.0;  // spec §3: bytes counted as a 16-bit cache (b_kv = 2)

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

// ---- stats store ------------------------------------------------------------------

int64_t EntmaxStatsStore::slot_bytes() const {
  return 2 * geometry_.n_layers * geometry_.n_kv_heads * geometry_.head_dim *
         static_cast<int64_t>(c10::elementSize(geometry_.dtype));
}

absl::Status EntmaxStatsStore::EnsureAllocated(int64_t num_blocks, int slots_per_block) {
  if (storage_.count(slots_per_block) > 0 || num_blocks <= 0) return absl::OkStatus();
  auto opts = at::TensorOptions().dtype(geometry_.dtype).device(geometry_.device);
  try {
    storage_[slots_per_block] = at::zeros(
        {geometry_.n_layers, 2, num_blocks * slots_per_block, geometry_.n_kv_heads, geometry_.head_dim}, opts);
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "entmax_kv: page statistics (", num_blocks * slots_per_block * slot_bytes(), " bytes beside the KV pool, ",
        slots_per_block, " slot(s) per block) do not fit: ", e.what_without_backtrace()));
  }
  return absl::OkStatus();
}

int EntmaxSlotsPerBlock(int page_size) { return EntmaxStatsSlotsPerBlock(page_size, static_cast<int>(P)); }

// ---- strategy --------------------------------------------------------------------

EntmaxKvStrategy::EntmaxKvStrategy(const KvGeometry& g, int64_t pool_bytes)
    : geometry_(g), stats_(std::make_shared<EntmaxStatsStore>(g)) {
  // The pool shares `pool_bytes` between K/V pages and their stats, so it is
  // sized in pages of (K/V + stats) bytes.
  KvGeometry kv = g;
  const int64_t kv_page = 2 * g.n_layers * g.n_kv_heads * P * g.head_dim *
                          static_cast<int64_t>(c10::elementSize(g.dtype));
  const int64_t bytes = pool_bytes > 0 ? pool_bytes / (kv_page + stats_->slot_bytes()) * kv_page : 0;
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
  // At admission, not inside a step: a store that does not fit fails this request alone.
  KV_RETURN_IF_ERROR(stats_->EnsureAllocated(pool_->num_pages(), EntmaxSlotsPerBlock(c.page_size)));
  return std::make_unique<EntmaxKvSequenceCache>(pool_, stats_, c, config.max_tokens);
}

int64_t EntmaxKvStrategy::PredictBytes(const StrategyConfig& config, int64_t prompt_tokens,
                                       int64_t max_new_tokens) const {
  const absl::StatusOr<EntmaxKvConfig> c = ParseEntmaxKvConfig(config, geometry_.n_layers);
  const int page_size = c.ok() ? c->page_size : static_cast<int>(P);
  return CeilDiv(prompt_tokens + max_new_tokens, P) *
         (pool_->page_bytes() + stats_->slot_bytes() * EntmaxSlotsPerBlock(page_size));
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
  KV_RETURN_IF_ERROR(stats_->EnsureAllocated(pool_->num_pages(), EntmaxSlotsPerBlock(config_.page_size)));
  pages_.insert(pages_.end(), got.begin(), got.end());
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  return absl::OkStatus();
}

EntmaxDecodeRows EntmaxKvSequenceCache::Rows() const {
  EntmaxDecodeRows rows;
  rows.block_table = block_table_.const_data_ptr<int32_t>();
  rows.seq_lens = seq_lens_.const_data_ptr<int32_t>();
  rows.batch = 1;
  rows.max_blocks = static_cast<int>(block_table_.size(1));
  rows.page_size = config_.page_size;
  return rows;
}

absl::Status EntmaxKvSequenceCache::UpdateStats(int64_t layer, int recent_pages) {
  return RunEntmaxPageStats(*pool_, *stats_, layer, Rows(), recent_pages);
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
    // The kernels' table row: the N blocks, padded to whole pages of a
    // 32/64-token page_size with the scratch block (never read: past T).
    const int64_t N = CeilDiv(T, P), W = EntmaxTableBlocks(T, config_.page_size);
    if (n == 1 && g.device.is_cuda()) {
      // Decode: one asynchronous upload of [append slots (Hkv) | table (W) |
      // T] instead of MakePagedChunk's three blocking copies (no host sync per
      // step; issue 9).
      const int64_t Hkv = g.n_kv_heads;
      std::vector<int64_t> buf(static_cast<size_t>(Hkv + W + 1), PagedKvPool::kScratchPage);
      for (int64_t h = 0; h < Hkv; ++h) buf[h] = PagedSlotRow(pages_[past / P], h, past % P, Hkv);
      for (int64_t i = 0; i < N; ++i) buf[Hkv + i] = pages_[i];
      buf[Hkv + W] = T;
      const at::Tensor dev = EntmaxUploadAsync(buf, g.device);
      chunk_.slots = dev.slice(0, 0, Hkv);
      chunk_.pages = dev.slice(0, Hkv, Hkv + N);
      const at::Tensor i32 = dev.slice(0, Hkv).to(at::kInt);  // table | T, one device cast
      block_table_ = i32.slice(0, 0, W).view({1, -1});
      seq_lens_ = i32.slice(0, W, W + 1);
    } else {
      chunk_ = MakePagedChunk(pages_, past, n, g);
      block_table_ = at::constant_pad_nd(chunk_.pages.to(at::kInt), {0, W - N}, PagedKvPool::kScratchPage)
                         .view({1, -1});
      std::vector<int64_t> len = {T};
      seq_lens_ = HostToDevice(len, g.device, at::kInt);
    }
    chunk_index_at_ = past;
  }
  at::Tensor kpool = pool_->keys(layer), vpool = pool_->values(layer);
  AppendPagedChunk(kpool, vpool, chunk_, k, v);
  // K1: the pages this step touched (a chunk of n tokens touches at most
  // ceil(n/P) + 1 pages of the config's P; decode: the tail).
  KV_RETURN_IF_ERROR(UpdateStats(layer, n == 1 ? 1 : static_cast<int>(CeilDiv(n, config_.page_size) + 1)));
  if (n == 1) return Decode(layer, q);
  at::Tensor keys = GatherPagedTokens(kpool, chunk_.pages, T), values = GatherPagedTokens(vpool, chunk_.pages, T);
  return CausalGqaAttention(q, keys, values, past);
}

absl::StatusOr<at::Tensor> EntmaxKvSequenceCache::Decode(int64_t layer, const at::Tensor& q_in) {
  const int64_t T = length_ + 1;
  at::Tensor q = q_in.select(1, 0).contiguous().unsqueeze(0);  // [1, H, D]
  at::Tensor out = at::empty_like(q);
  at::Tensor mass;
  const EntmaxDecodeRows rows = Rows();
  const EntmaxDecodeBounds bounds = EntmaxBoundsFor(config_, layer, {T}, rows.max_pages());
  KV_RETURN_IF_ERROR(RunEntmaxDecode(*pool_, *stats_, config_, layer, rows, bounds, q, out, mass));
  mass_error_max_ = at::maximum(mass_error_max_, (mass - 1.0f).abs().max());
  CountDecode(layer, T);
  return out.squeeze(0).unsqueeze(1);  // [H, 1, D]
}

void EntmaxKvSequenceCache::CountDecode(int64_t layer, int64_t T) {
  const KvGeometry& g = pool_->geometry();
  const int64_t Hkv = g.n_kv_heads, D = g.head_dim;
  const EntmaxDecodeCounts k = EntmaxCountsFor(config_, layer, T, CeilDiv(T, config_.page_size));
  const EntmaxSeqPages& sp = k.pages;
  const bool fallback = k.fallback;
  const int64_t n_hist = k.n_hist, t_sel = k.t_sel;

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
}

absl::Status EntmaxKvSequenceCache::EndStep(const SeqStep& seq, const StepContext&) {
  length_ += seq.n_new;
  return absl::OkStatus();
}

int64_t EntmaxKvSequenceCache::BytesHeld() const {
  return static_cast<int64_t>(pages_.size()) *
         (pool_->page_bytes() + stats_->slot_bytes() * EntmaxSlotsPerBlock(config_.page_size));
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
    lr.detail = absl::StrCat(dense ? "dense" : "topk", ": ", CeilDiv(length_, config_.page_size), " pages of ",
                             config_.page_size, " tokens");
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
