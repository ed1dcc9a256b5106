// EntmaxKvStrategy::ForwardGroup: the decode rows of a step that share one
// EntmaxKvConfig go through one launch of each kernel (the append, K1, K2, K3,
// K7 all take B sequences) instead of one sequence at a time. On the H100 a
// per-sequence step at (8, 32K) cost ~230 us per layer against ~78 us batched
// (bench/results/gpu/entmax_kv_decode_s12_h100.json, per_seq vs step).
// Prompt chunks, probe rows and decode rows with another config take the
// per-sequence path (EntmaxKvSequenceCache::Forward).
#include <ATen/ATen.h>

#include <algorithm>

#include "engine/kv/entmax_kv/entmax_kv_decode.h"
#include "engine/kv/entmax_kv/entmax_kv_strategy.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

constexpr int64_t P = PagedKvPool::kPageTokens;

}  // namespace

absl::Status EntmaxKvStrategy::PrepareBatch(absl::Span<EntmaxKvSequenceCache* const> caches, int64_t step) {
  const int64_t B = static_cast<int64_t>(caches.size()), Hkv = geometry_.n_kv_heads;
  int64_t MB = 1;
  for (EntmaxKvSequenceCache* c : caches) {
    KV_RETURN_IF_ERROR(c->Grow(c->length() + 1));
    MB = std::max<int64_t>(MB, static_cast<int64_t>(c->pages().size()));
  }
  // One asynchronous upload: [append slots (B*Hkv) | block table (B*MB,
  // padded with the scratch page, never read past a row's pages) | T (B)].
  std::vector<int64_t> buf(static_cast<size_t>(B * Hkv + B * MB + B), PagedKvPool::kScratchPage);
  batch_.lengths.assign(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int32_t>& pages = caches[b]->pages();
    const int64_t pos = caches[b]->length();  // the new token's position
    for (int64_t h = 0; h < Hkv; ++h) buf[b * Hkv + h] = (static_cast<int64_t>(pages[pos / P]) * Hkv + h) * P + pos % P;
    std::copy(pages.begin(), pages.end(), buf.begin() + B * Hkv + b * MB);
    buf[B * Hkv + B * MB + b] = pos + 1;
    batch_.lengths[b] = pos + 1;
  }
  const at::Tensor dev = EntmaxUploadAsync(buf, geometry_.device);
  batch_.slots = dev.slice(0, 0, B * Hkv);
  const at::Tensor i32 = dev.slice(0, B * Hkv).to(at::kInt);  // table | T, one device cast
  batch_.block_table = i32.slice(0, 0, B * MB).view({B, MB});
  batch_.seq_lens = i32.slice(0, B * MB, B * MB + B);
  batch_.step = step;
  return absl::OkStatus();
}

absl::Status EntmaxKvStrategy::ForwardGroup(int64_t layer, absl::Span<SequenceCache* const> seqs,
                                            absl::Span<const SeqStep> steps, GroupTensors& t,
                                            const StepContext& ctx) {
  if (ctx.decode_prepared) return DecodePrepared(layer, t);
  std::vector<size_t> batch, other;
  std::vector<EntmaxKvSequenceCache*> caches;
  for (size_t i = 0; i < seqs.size(); ++i) {
    auto* c = static_cast<EntmaxKvSequenceCache*>(seqs[i]);
    const bool decode = steps[i].n_new == 1 && steps[i].n_probe == 0 && steps[i].start_pos == c->length();
    if (decode && (caches.empty() || EntmaxKernelScalars(caches.front()->config()) == EntmaxKernelScalars(c->config()))) {
      batch.push_back(i);
      caches.push_back(c);
    } else {
      other.push_back(i);
    }
  }
  if (batch.size() < 2) {  // one decode row: the per-sequence path is the same launches
    other.insert(other.end(), batch.begin(), batch.end());
    batch.clear();
  }
  for (size_t i : other) KV_RETURN_IF_ERROR(ForwardOneSequence(layer, seqs[i], steps[i], t.row_offset[i], t, ctx));
  if (batch.empty()) return absl::OkStatus();

  const int64_t B = static_cast<int64_t>(batch.size()), D = geometry_.head_dim, Hkv = geometry_.n_kv_heads;
  if (layer == 0 || batch_.step != ctx.step || static_cast<int64_t>(batch_.lengths.size()) != B) {
    KV_RETURN_IF_ERROR(PrepareBatch(caches, ctx.step));
  }
  // The batch's rows of the step: a slice when contiguous, else gathered.
  bool contiguous = true;
  for (int64_t j = 0; j < B; ++j) contiguous = contiguous && t.row_offset[batch[j]] == t.row_offset[batch[0]] + j;
  at::Tensor q, k, v, out, idx;
  if (contiguous) {
    const int64_t r0 = t.row_offset[batch[0]];
    q = t.q.narrow(0, r0, B), k = t.k.narrow(0, r0, B), v = t.v.narrow(0, r0, B), out = t.out.narrow(0, r0, B);
  } else {
    std::vector<int64_t> rows;
    for (size_t i : batch) rows.push_back(t.row_offset[i]);
    idx = HostToDevice(rows, geometry_.device);
    q = t.q.index_select(0, idx), k = t.k.index_select(0, idx), v = t.v.index_select(0, idx);
    out = at::empty_like(q);
  }
  if (q.stride(2) != 1) q = q.contiguous();
  // Append (one scatter per pool into the flat [NB*Hkv*P, D] views), then
  // the tail page's stats (K1), then K2 / K3 / K7 for all rows.
  at::Tensor kpool = pool_->keys(layer), vpool = pool_->values(layer);
  kpool.view({-1, D}).index_copy_(0, batch_.slots, k.reshape({B * Hkv, D}));
  vpool.view({-1, D}).index_copy_(0, batch_.slots, v.reshape({B * Hkv, D}));
  EntmaxDecodeRows rows;
  rows.block_table = batch_.block_table.const_data_ptr<int32_t>();
  rows.seq_lens = batch_.seq_lens.const_data_ptr<int32_t>();
  rows.batch = static_cast<int>(B);
  rows.max_blocks = static_cast<int>(batch_.block_table.size(1));
  KV_RETURN_IF_ERROR(aside_.Begin(*pool_, *stats_, layer, rows));  // K1, beside K2-K7
  // K7's mass is 1 by construction on the alpha-1 path (the only one served,
  // entmax_kv_config.cc): the per-sequence path keeps checking it.
  at::Tensor mass;
  const EntmaxKvConfig& config = caches.front()->config();
  const EntmaxDecodeBounds bounds = EntmaxBoundsFor(config, layer, batch_.lengths, rows.max_blocks);
  const absl::Status s = RunEntmaxDecode(*pool_, *stats_, config, layer, rows, bounds, q, out, mass);
  KV_RETURN_IF_ERROR(aside_.End());
  KV_RETURN_IF_ERROR(s);
  for (int64_t b = 0; b < B; ++b) caches[b]->CountDecode(layer, batch_.lengths[b]);
  if (!contiguous) t.out.index_copy_(0, idx, out);
  return absl::OkStatus();
}

}  // namespace kvstream
