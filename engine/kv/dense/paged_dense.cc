#include "engine/kv/dense/paged_dense.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/env_switch.h"
#include "engine/kv/dense/dense_cache.h"
#include "engine/status_macros.h"
#include "kernels/dense/dense_decode.h"
#include "kernels/dense/paged_append.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#endif

namespace kvstream {
namespace {

constexpr int64_t P = PagedKvPool::kPageTokens;

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The decode kernel's fused append and merge; KVSTREAM_DENSE_FUSED=0 turns them
// off (separate PagedAppend and merge kernels) for A/B timing.
bool FusedDecodeEnabled() {
  static const bool enabled = EnvSwitchOn("KVSTREAM_DENSE_FUSED");
  return enabled;
}

// Split planning sees lengths rounded up to a power of two (>= 256), so the
// split count, part of a captured graph, changes only when a sequence
// doubles.
int PlanLength(int64_t max_len) {
  int64_t t = 256;
  while (t < max_len) t *= 2;
  return static_cast<int>(std::min<int64_t>(t, INT32_MAX));
}

}  // namespace

DenseDecodeWave CurrentDenseDecodeWave() {
  DenseDecodeWave w;
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  w.num_sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  int clock_khz = 0, bus_bits = 0, dev = 0;
  if (cudaGetDevice(&dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) == cudaSuccess &&
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) == cudaSuccess) {
    w.split_ctas_per_sm = DenseDecodeSplitCtasPerSm(2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9);
  }
#endif
  return w;
}

// ---- strategy ------------------------------------------------------------------

PagedDenseStrategy::PagedDenseStrategy(const KvGeometry& g, int64_t pool_bytes)
    : geometry_(g),
      pool_(std::make_shared<PagedKvPool>(g, pool_bytes)),
      max_pages_per_seq_(CeilDiv(std::max<int64_t>(g.context_length, P), P)) {}

absl::Status PagedDenseStrategy::Validate(const StrategyConfig& config) const {
  if (!config.knobs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("kv_compression.dense has no knobs (got '",
                                                   config.knobs.begin()->first, "')"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SequenceCache>> PagedDenseStrategy::Open(const StrategyConfig& config) {
  KV_RETURN_IF_ERROR(Validate(config));
  return std::make_unique<PagedDenseSequenceCache>(pool_, config.max_tokens);
}

int64_t PagedDenseStrategy::PredictBytes(const StrategyConfig&, int64_t prompt_tokens,
                                         int64_t max_new_tokens) const {
  return CeilDiv(prompt_tokens + max_new_tokens, P) * pool_->page_bytes();
}

absl::Status PagedDenseStrategy::EnsureBuffers() {
  if (block_table_.defined()) return absl::OkStatus();
  const bool cuda = geometry_.device.is_cuda();
  // First, so that a failure leaves nothing half built (no buffers without it).
  if (cuda) KV_RETURN_IF_ERROR(staged_.Init());
  auto i32 = at::TensorOptions().dtype(at::kInt).device(geometry_.device);
  block_table_ = at::zeros({kMaxPreparedRows, max_pages_per_seq_}, i32);
  seq_lens_ = at::zeros({kMaxPreparedRows}, i32);
  slots_ = at::zeros({kMaxPreparedRows * geometry_.n_kv_heads}, i32.dtype(at::kLong));
  split_counters_ = at::zeros({kMaxPreparedRows * geometry_.n_heads}, i32);
  auto host = at::TensorOptions().dtype(at::kInt).pinned_memory(cuda);
  table_host_ = at::empty({kMaxPreparedRows * max_pages_per_seq_}, host);
  lens_host_ = at::empty({kMaxPreparedRows}, host);
  slots_host_ = at::empty({kMaxPreparedRows * geometry_.n_kv_heads}, host.dtype(at::kLong));
  wave_ = cuda ? CurrentDenseDecodeWave() : DenseDecodeWave{};
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PagedDenseStrategy::PrepareDecode(absl::Span<SequenceCache* const> seqs,
                                                          absl::Span<const SeqStep> steps, int64_t padded_rows,
                                                          const StepContext& ctx) {
  const int64_t B = static_cast<int64_t>(seqs.size());
  if (B < 1 || padded_rows < B || padded_rows > kMaxPreparedRows) {
    return absl::InternalError(absl::StrFormat("PrepareDecode: %d rows padded to %d (at most %d)", B, padded_rows,
                                               kMaxPreparedRows));
  }
  KV_RETURN_IF_ERROR(EnsureBuffers());
  const int64_t Hkv = geometry_.n_kv_heads;
  int64_t max_len = 1, max_pages = 1;
  std::vector<PagedDenseSequenceCache*> caches(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    caches[b] = static_cast<PagedDenseSequenceCache*>(seqs[b]);
    if (steps[b].n_new != 1 || steps[b].start_pos != caches[b]->length()) {
      return absl::InternalError(absl::StrFormat("PrepareDecode: row %d has %d new tokens at %d, cache holds %d", b,
                                                 steps[b].n_new, steps[b].start_pos, caches[b]->length()));
    }
    KV_RETURN_IF_ERROR(caches[b]->Grow(caches[b]->length() + 1));
    max_len = std::max(max_len, caches[b]->length() + 1);
    max_pages = std::max<int64_t>(max_pages, static_cast<int64_t>(caches[b]->pages().size()));
  }
  if (max_pages > max_pages_per_seq_) {
    return absl::InternalError(absl::StrFormat("PrepareDecode: %d pages exceed the block table's %d", max_pages,
                                               max_pages_per_seq_));
  }
  // Host images; padded rows: length 0 (attend to nothing), append to the
  // scratch page. The previous step's uploads must have read them first.
  KV_RETURN_IF_ERROR(staged_.WaitLast());
  int32_t* table = table_host_.data_ptr<int32_t>();
  int32_t* lens = lens_host_.data_ptr<int32_t>();
  int64_t* slots = slots_host_.data_ptr<int64_t>();
  std::fill(table, table + padded_rows * max_pages, PagedKvPool::kScratchPage);
  std::fill(lens, lens + padded_rows, 0);
  for (int64_t b = 0; b < padded_rows; ++b) {
    for (int64_t h = 0; h < Hkv; ++h) slots[b * Hkv + h] = PagedSlotRow(PagedKvPool::kScratchPage, h, 0, Hkv);
    if (b >= B) continue;
    const auto& pages = caches[b]->pages();
    std::copy(pages.begin(), pages.end(), table + b * max_pages);
    const int64_t t = caches[b]->length();  // position of the new token
    lens[b] = static_cast<int32_t>(t + 1);
    for (int64_t h = 0; h < Hkv; ++h) slots[b * Hkv + h] = PagedSlotRow(pages[t / P], h, t % P, Hkv);
  }
  block_table_.narrow(0, 0, padded_rows).narrow(1, 0, max_pages)
      .copy_(table_host_.narrow(0, 0, padded_rows * max_pages).view({padded_rows, max_pages}), /*non_blocking=*/true);
  seq_lens_.narrow(0, 0, padded_rows).copy_(lens_host_.narrow(0, 0, padded_rows), /*non_blocking=*/true);
  slots_.narrow(0, 0, padded_rows * Hkv).copy_(slots_host_.narrow(0, 0, padded_rows * Hkv), /*non_blocking=*/true);
  KV_RETURN_IF_ERROR(staged_.Record());

  prepared_step_ = ctx.step;
  prepared_rows_ = padded_rows;
  prepared_max_len_ = max_len;
  prepared_splits_ = PlanDenseDecodeSplits(static_cast<int>(padded_rows), static_cast<int>(geometry_.n_heads),
                                           static_cast<int>(Hkv), PlanLength(max_len), wave_.num_sms,
                                           wave_.split_ctas_per_sm);
  return prepared_splits_;
}

absl::Status PagedDenseStrategy::DecodeLayer(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, at::Tensor& out) {
  const int64_t R = prepared_rows_, H = geometry_.n_heads, Hkv = geometry_.n_kv_heads, D = geometry_.head_dim;
  // Append this layer's new K/V: one scatter each into the flat pool view, or
  // (CUDA, k and v rows of the qkv projection) inside the attention kernel.
  at::Tensor kpool = pool_->keys(layer), vpool = pool_->values(layer);
  const at::Tensor slots = slots_.narrow(0, 0, R * Hkv);
  const bool rows_ok = k.stride(1) == D && k.stride(2) == 1 && v.stride(1) == D && v.stride(2) == 1 &&
                       v.stride(0) == k.stride(0);
  const bool fused = geometry_.device.is_cuda() && rows_ok && FusedDecodeEnabled();
  bool appended = fused;
#ifdef KVSTREAM_HAVE_CUDA_TORCH
  if (!appended && geometry_.device.is_cuda() && rows_ok) {
    // k and v straight out of the qkv rows: one kernel, no reshape copies.
    PagedAppendParams ap;
    ap.k = k.const_data_ptr();
    ap.v = v.const_data_ptr();
    ap.slots = slots.const_data_ptr<int64_t>();
    ap.k_pool = kpool.mutable_data_ptr();
    ap.v_pool = vpool.mutable_data_ptr();
    ap.row_stride = k.stride(0);
    ap.pool_rows = kpool.numel() / D;
    ap.rows = static_cast<int>(R);
    ap.num_kv_heads = static_cast<int>(Hkv);
    ap.head_dim = static_cast<int>(D);
    ap.dtype = KvDTypeOf(geometry_.dtype);
    const cudaError_t e = LaunchPagedAppend(ap, at::cuda::getCurrentCUDAStream());
    if (e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("paged append (layer ", layer, "): ", cudaGetErrorString(e)));
    }
    appended = true;
  }
#endif
  if (!appended) {
    kpool.view({-1, D}).index_copy_(0, slots, k.reshape({R * Hkv, D}));
    vpool.view({-1, D}).index_copy_(0, slots, v.reshape({R * Hkv, D}));
  }

  DenseDecodeParams p;
  p.q = q.const_data_ptr();
  p.q_stride_b = q.stride(0);
  p.q_stride_h = q.stride(1);
  p.k_pool = kpool.mutable_data_ptr();
  p.v_pool = vpool.mutable_data_ptr();
  if (fused) {
    // Padded rows have length 0: nothing appended, nothing attended.
    p.k_new = k.const_data_ptr();
    p.v_new = v.const_data_ptr();
    p.new_stride_b = k.stride(0);
    p.split_counters = split_counters_.mutable_data_ptr<int32_t>();
  }
  p.block_table = block_table_.const_data_ptr<int32_t>();
  p.seq_lens = seq_lens_.const_data_ptr<int32_t>();
  p.out = out.mutable_data_ptr();
  p.out_stride_b = out.stride(0);
  p.out_stride_h = out.stride(1);
  p.batch = static_cast<int>(R);
  p.num_heads = static_cast<int>(H);
  p.num_kv_heads = static_cast<int>(Hkv);
  p.head_dim = static_cast<int>(D);
  p.page_size = static_cast<int>(P);
  p.num_blocks = static_cast<int>(pool_->num_pages());
  p.max_blocks_per_seq = static_cast<int>(max_pages_per_seq_);
  p.max_seq_len = static_cast<int>(prepared_max_len_);
  p.num_splits = prepared_splits_;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  p.dtype = KvDTypeOf(geometry_.dtype);
  at::Tensor part_out, part_lse;
  if (p.num_splits > 1) {
    auto f32 = at::TensorOptions().dtype(at::kFloat).device(geometry_.device);
    part_out = at::empty({R * H * p.num_splits * D}, f32);
    part_lse = at::empty({R * H * p.num_splits}, f32);
    p.partial_out = part_out.mutable_data_ptr<float>();
    p.partial_lse = part_lse.mutable_data_ptr<float>();
  }
  if (geometry_.device.is_cuda()) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    const cudaError_t e = LaunchDenseDecode(p, at::cuda::getCurrentCUDAStream());
    if (e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("dense decode kernel (layer ", layer, "): ", cudaGetErrorString(e)));
    }
    return absl::OkStatus();
#else
    return absl::FailedPreconditionError("this build has no CUDA kernels");
#endif
  }
  if (!DenseDecodeRef(p)) {
    const char* why = DenseDecodeValidate(p);
    return absl::InternalError(absl::StrCat("dense decode twin (layer ", layer, "): ", why ? why : "bad page id"));
  }
  return absl::OkStatus();
}

absl::Status PagedDenseStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                              absl::Span<const SeqStep> steps, GroupTensors& t,
                                              const StepContext& ctx) {
  if (ctx.decode_prepared) {
    const int64_t R = prepared_rows_;
    at::Tensor out = t.out.narrow(0, 0, R);
    return DecodeLayer(layer, t.q.narrow(0, 0, R), t.k.narrow(0, 0, R), t.v.narrow(0, 0, R), out);
  }
  // Decode rows (one new token) go through the kernel together; prompt
  // chunks one sequence at a time through SDPA.
  std::vector<size_t> decode, other;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const bool one = steps[i].n_new == 1 && static_cast<int64_t>(decode.size()) < kMaxPreparedRows;
    (one ? decode : other).push_back(i);
  }
  for (size_t i : other) {
    KV_RETURN_IF_ERROR(ForwardOneSequence(layer, seqs[i], steps[i], t.row_offset[i], t, ctx));
  }
  if (decode.empty()) return absl::OkStatus();
  const int64_t B = static_cast<int64_t>(decode.size());
  if (layer == 0 || prepared_step_ != ctx.step) {
    std::vector<SequenceCache*> dc;
    std::vector<SeqStep> ds;
    for (size_t i : decode) {
      dc.push_back(seqs[i]);
      ds.push_back(steps[i]);
    }
    KV_RETURN_IF_ERROR(PrepareDecode(dc, ds, B, ctx).status());
  }
  bool contiguous = true;
  for (int64_t j = 0; j < B; ++j) contiguous = contiguous && t.row_offset[decode[j]] == t.row_offset[decode[0]] + j;
  if (contiguous) {
    const int64_t r0 = t.row_offset[decode[0]];
    at::Tensor out = t.out.narrow(0, r0, B);
    return DecodeLayer(layer, t.q.narrow(0, r0, B), t.k.narrow(0, r0, B), t.v.narrow(0, r0, B), out);
  }
  std::vector<int64_t> rows;
  for (size_t i : decode) rows.push_back(t.row_offset[i]);
  const at::Tensor idx = HostToDevice(rows, geometry_.device);
  at::Tensor out = at::empty({B, t.out.size(1), t.out.size(2)}, t.out.options());
  KV_RETURN_IF_ERROR(DecodeLayer(layer, t.q.index_select(0, idx), t.k.index_select(0, idx),
                                 t.v.index_select(0, idx), out));
  t.out.index_copy_(0, idx, out);
  return absl::OkStatus();
}

// ---- sequence --------------------------------------------------------------------

PagedDenseSequenceCache::~PagedDenseSequenceCache() { pool_->Give(pages_); }

absl::Status PagedDenseSequenceCache::Grow(int64_t tokens) {
  const int64_t need = CeilDiv(tokens, P) - static_cast<int64_t>(pages_.size());
  if (need <= 0) return absl::OkStatus();
  KV_ASSIGN_OR_RETURN(std::vector<int32_t> got, pool_->Take(need));
  pages_.insert(pages_.end(), got.begin(), got.end());
  peak_bytes_ = std::max(peak_bytes_, BytesHeld());
  return absl::OkStatus();
}

absl::StatusOr<at::Tensor> PagedDenseSequenceCache::Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k,
                                                            const at::Tensor& v, const SeqStep& seq,
                                                            const StepContext&) {
  const int64_t n = q.size(1), past = length_;
  if (seq.start_pos != past) {
    return absl::InternalError(absl::StrCat("paged dense cache holds ", past, " tokens but the step starts at ",
                                            seq.start_pos));
  }
  const int64_t T = past + n;
  const KvGeometry& g = pool_->geometry();
  if (chunk_index_at_ != past) {
    KV_RETURN_IF_ERROR(Grow(T));
    chunk_ = MakePagedChunk(pages_, past, n, g);
    chunk_index_at_ = past;
  }
  at::Tensor kpool = pool_->keys(layer), vpool = pool_->values(layer);
  AppendPagedChunk(kpool, vpool, chunk_, k, v);
  at::Tensor keys = GatherPagedTokens(kpool, chunk_.pages, T), values = GatherPagedTokens(vpool, chunk_.pages, T);
  return CausalGqaAttention(q, keys, values, past);
}

absl::Status PagedDenseSequenceCache::EndStep(const SeqStep& seq, const StepContext&) {
  length_ += seq.n_new;
  return absl::OkStatus();
}

int64_t PagedDenseSequenceCache::BytesHeld() const {
  return static_cast<int64_t>(pages_.size()) * pool_->page_bytes();
}

CacheReport PagedDenseSequenceCache::Report() const {
  const KvGeometry& g = pool_->geometry();
  CacheReport r;
  r.strategy = "dense";
  r.kv_bytes_device = BytesHeld();
  r.tokens_seen = length_;
  r.tokens_held = length_;
  r.dense_equivalent_bytes = length_ * g.DenseBytesPerToken16();
  r.compression_ratio =
      r.kv_bytes_device > 0 ? static_cast<double>(r.dense_equivalent_bytes) / r.kv_bytes_device : 0.0;
  r.peak_kv_bytes = std::max(peak_bytes_, r.kv_bytes_device);
  for (int64_t l = 0; l < g.n_layers; ++l) {
    LayerCacheReport lr;
    lr.layer = static_cast<int32_t>(l);
    lr.detail = absl::StrCat("dense paged: ", pages_.size(), " pages of ", P, " tokens");
    lr.bytes = r.kv_bytes_device / g.n_layers;
    lr.tokens_held = length_;
    r.layers.push_back(std::move(lr));
  }
  return r;
}

}  // namespace kvstream
