// EntmaxKvStrategy's prepared decode step (CUDA graphs, engine/model/
// decode_graphs.h): PrepareDecode does every host decision of the step (page
// growth, block table, lengths, append slots, the report's counts) into
// buffers at fixed addresses; DecodeRows is device work only, so the model
// captures all layers of the step once per key and replays them (the eager
// batched path of ForwardGroup runs the same two).
// What the kernels bake in: the table width MB (a power of two >= 64 pool
// blocks, at most the context's blocks rounded up to whole 64-token pages),
// the config's scalars (page_size among them), whether any row ranks
// pages (K2 launched or not) and K7's split plan from EntmaxGraphBoundsFor.
// Padded rows have length 0 (attend to nothing) and append to the scratch page.
#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/str_format.h"
#include "engine/kv/entmax_kv/entmax_kv_decode.h"
#include "engine/kv/entmax_kv/entmax_kv_strategy.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

constexpr int64_t P = PagedKvPool::kPageTokens;

}  // namespace

bool EntmaxKvStrategy::CanPrepareDecode(absl::Span<SequenceCache* const> seqs) const {
  if (seqs.empty() || static_cast<int64_t>(seqs.size()) > kMaxPreparedRows) return false;
  const std::vector<int64_t> first = EntmaxKernelScalars(static_cast<EntmaxKvSequenceCache*>(seqs[0])->config());
  return std::all_of(seqs.begin(), seqs.end(), [&](SequenceCache* s) {
    return EntmaxKernelScalars(static_cast<EntmaxKvSequenceCache*>(s)->config()) == first;
  });
}

absl::StatusOr<int64_t> EntmaxKvStrategy::PrepareDecode(absl::Span<SequenceCache* const> seqs,
                                                        absl::Span<const SeqStep> steps, int64_t padded_rows,
                                                        const StepContext& ctx) {
  const int64_t B = static_cast<int64_t>(seqs.size()), Hkv = geometry_.n_kv_heads;
  if (B < 1 || padded_rows < B || padded_rows > kMaxPreparedRows || !CanPrepareDecode(seqs)) {
    return absl::InternalError(absl::StrFormat(
        "entmax_kv PrepareDecode: %d rows padded to %d (at most %d, one config)", B, padded_rows, kMaxPreparedRows));
  }
  // Whole pages of any page_size (at most 64 tokens = 4 blocks) in a row.
  const int64_t mb_max = std::max<int64_t>(EntmaxTableBlocks(geometry_.context_length, 64), 4);
  if (!prepared_.table.defined()) {
    auto dev = at::TensorOptions().device(geometry_.device);
    prepared_.table = at::empty({kMaxPreparedRows * mb_max}, dev.dtype(at::kInt));
    prepared_.lens = at::empty({kMaxPreparedRows}, dev.dtype(at::kInt));
    prepared_.slots = at::empty({kMaxPreparedRows * Hkv}, dev.dtype(at::kLong));
    const bool cuda = geometry_.device.is_cuda();
    auto host = [&](int64_t n, at::ScalarType t) {
      return at::empty({n}, at::TensorOptions().dtype(t).pinned_memory(cuda));
    };
    prepared_.table_host = host(kMaxPreparedRows * mb_max, at::kInt);
    prepared_.lens_host = host(kMaxPreparedRows, at::kInt);
    prepared_.slots_host = host(kMaxPreparedRows * Hkv, at::kLong);
    if (cuda) KV_RETURN_IF_ERROR(staged_.Init());
  }
  std::vector<EntmaxKvSequenceCache*> caches(static_cast<size_t>(B));
  int64_t pages_needed = 1;
  for (int64_t b = 0; b < B; ++b) {
    caches[b] = static_cast<EntmaxKvSequenceCache*>(seqs[b]);
    if (steps[b].n_new != 1 || steps[b].n_probe != 0 || steps[b].start_pos != caches[b]->length()) {
      return absl::InternalError(absl::StrFormat("entmax_kv PrepareDecode: row %d has %d new tokens at %d, cache "
                                                 "holds %d", b, steps[b].n_new, steps[b].start_pos,
                                                 caches[b]->length()));
    }
    KV_RETURN_IF_ERROR(caches[b]->Grow(caches[b]->length() + 1));
    pages_needed = std::max<int64_t>(pages_needed, static_cast<int64_t>(caches[b]->pages().size()));
  }
  if (pages_needed > mb_max) {
    return absl::InternalError(absl::StrFormat("entmax_kv PrepareDecode: %d pages exceed the context's %d",
                                               pages_needed, mb_max));
  }
  int64_t MB = 64;
  while (MB < pages_needed) MB *= 2;
  MB = std::min(MB, mb_max);

  // Host images; the previous step's uploads must have read them first.
  KV_RETURN_IF_ERROR(staged_.WaitLast());
  int32_t* table = prepared_.table_host.data_ptr<int32_t>();
  int32_t* lens = prepared_.lens_host.data_ptr<int32_t>();
  int64_t* slots = prepared_.slots_host.data_ptr<int64_t>();
  std::fill(table, table + padded_rows * MB, PagedKvPool::kScratchPage);
  std::fill(lens, lens + padded_rows, 0);
  const EntmaxKvConfig& config = caches[0]->config();
  const int64_t max_pages = MB * P / config.page_size;  // the kernels' page rows (EntmaxDecodeRows::max_pages)
  bool rank_pages = false;
  for (int64_t b = 0; b < padded_rows; ++b) {
    for (int64_t h = 0; h < Hkv; ++h) slots[b * Hkv + h] = PagedSlotRow(PagedKvPool::kScratchPage, h, 0, Hkv);
    if (b >= B) continue;
    const std::vector<int32_t>& pages = caches[b]->pages();
    const int64_t pos = caches[b]->length();  // the new token's position
    std::copy(pages.begin(), pages.end(), table + b * MB);
    lens[b] = static_cast<int32_t>(pos + 1);
    for (int64_t h = 0; h < Hkv; ++h) slots[b * Hkv + h] = PagedSlotRow(pages[pos / P], h, pos % P, Hkv);
    // The report's counts: a replayed step runs no host code.
    for (int64_t l = 0; l < geometry_.n_layers; ++l) caches[b]->CountDecode(l, pos + 1);
    rank_pages = rank_pages || !EntmaxCountsFor(config, config.dense_layers, pos + 1, max_pages).fallback;
  }
  const bool non_blocking = geometry_.device.is_cuda();
  prepared_.table.narrow(0, 0, padded_rows * MB).copy_(prepared_.table_host.narrow(0, 0, padded_rows * MB),
                                                       non_blocking);
  prepared_.lens.narrow(0, 0, padded_rows).copy_(prepared_.lens_host.narrow(0, 0, padded_rows), non_blocking);
  prepared_.slots.narrow(0, 0, padded_rows * Hkv).copy_(prepared_.slots_host.narrow(0, 0, padded_rows * Hkv),
                                                        non_blocking);
  if (non_blocking) KV_RETURN_IF_ERROR(staged_.Record());

  prepared_.step = ctx.step;
  prepared_.rows = padded_rows;
  prepared_.max_blocks = MB;
  prepared_.rank_pages = rank_pages;
  prepared_.config = config;
  std::vector<int64_t> key = EntmaxKernelScalars(config);
  key.push_back(MB);
  key.push_back(rank_pages ? 1 : 0);
  auto it = keys_.find(key);
  if (it != keys_.end()) return it->second;
  const int64_t id = static_cast<int64_t>(keys_.size());
  keys_.emplace(std::move(key), id);
  return id;
}

absl::Status EntmaxKvStrategy::DecodeRows(int64_t layer, at::Tensor q, const at::Tensor& k, const at::Tensor& v,
                                          at::Tensor& out) {
  const int64_t R = prepared_.rows, MB = prepared_.max_blocks, D = geometry_.head_dim, Hkv = geometry_.n_kv_heads;
  if (R < 1 || q.size(0) != R) return absl::InternalError("entmax_kv: decode rows without their PrepareDecode");
  if (q.stride(2) != 1) q = q.contiguous();
  const at::Tensor slots = prepared_.slots.narrow(0, 0, R * Hkv);
  at::Tensor kpool = pool_->keys(layer), vpool = pool_->values(layer);
  kpool.view({-1, D}).index_copy_(0, slots, k.reshape({R * Hkv, D}));
  vpool.view({-1, D}).index_copy_(0, slots, v.reshape({R * Hkv, D}));
  EntmaxDecodeRows rows;
  rows.block_table = prepared_.table.const_data_ptr<int32_t>();  // [R, MB] prefix of the buffer
  rows.seq_lens = prepared_.lens.const_data_ptr<int32_t>();
  rows.batch = static_cast<int>(R);
  rows.max_blocks = static_cast<int>(MB);
  rows.page_size = prepared_.config.page_size;
  KV_RETURN_IF_ERROR(aside_.Begin(*pool_, *stats_, layer, rows));  // K1, beside K2-K7
  const EntmaxDecodeBounds bounds =
      EntmaxGraphBoundsFor(prepared_.config, layer, rows.max_pages(), prepared_.rank_pages);
  at::Tensor mass;  // 1 by construction on the alpha-1 path (the only one served)
  const absl::Status s = RunEntmaxDecode(*pool_, *stats_, prepared_.config, layer, rows, bounds, q, out, mass);
  KV_RETURN_IF_ERROR(aside_.End());
  return s;
}

}  // namespace kvstream
