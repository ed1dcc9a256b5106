// Host-side checks of every EntmaxKV params struct: nullptr when valid, else a
// static message naming the bad field and what it allows. Kernels trust params
// that pass; device-side values (seq_lens, page ids) are clamped or trusted as
// entmax_kv_layout.h states.
#include "kernels/entmax_kv/entmax_page_stats.h"
#include "kernels/entmax_kv/entmax_topk.h"

namespace kvstream {

bool EntmaxKvSupports(int head_dim, KvDType dtype) {
  return (head_dim == 64 || head_dim == 128) && (dtype == KvDType::kBf16 || dtype == KvDType::kFp32);
}

const char* EntmaxPagedKvValidate(const EntmaxPagedKv& kv) {
  if (kv.batch < 0) return "kv.batch must be >= 0";
  if (kv.num_kv_heads <= 0) return "kv.num_kv_heads must be >= 1";
  if (!EntmaxKvSupports(kv.head_dim, kv.dtype)) return "kv.head_dim/dtype: D in {64, 128}, dtype in {fp32, bf16}";
  if (kv.page_size != 8 && kv.page_size != 16 && kv.page_size != 32 && kv.page_size != 64)
    return "kv.page_size must be 8, 16, 32 or 64";
  if (kv.block_size != 0 && kv.block_size != 8 && kv.block_size != 16 && kv.block_size != 32 && kv.block_size != 64)
    return "kv.block_size must be 0 (= page_size), 8, 16, 32 or 64";
  if (kv.num_blocks <= 0) return "kv.num_blocks must be >= 1";
  if (kv.max_blocks_per_seq <= 0) return "kv.max_blocks_per_seq must be >= 1";
  if (static_cast<int64_t>(kv.max_blocks_per_seq) * kv.page_size % EntmaxBlockTokens(kv) != 0)
    return "kv.max_blocks_per_seq * kv.page_size must be a multiple of kv.block_size (whole table rows)";
  if (kv.batch > 0 && (kv.block_table == nullptr || kv.seq_lens == nullptr))
    return "kv.block_table and kv.seq_lens are required";
  return nullptr;
}

namespace {

const char* ValidateQuery(const EntmaxQuery& q, const EntmaxPagedKv& kv) {
  if (q.q == nullptr && kv.batch > 0) return "query.q is required";
  if (q.num_heads <= 0 || q.num_heads % kv.num_kv_heads != 0)
    return "query.num_heads must be a positive multiple of kv.num_kv_heads";
  if (q.stride_b < 0 || q.stride_h < 0) return "query strides must be >= 0 (0 = packed)";
  return nullptr;
}

// Hs is Hkv (SHARED_KV) or H (PER_QUERY_HEAD); H/Hs query heads per list <= 64
// (the criticality kernel keeps them in shared memory).
const char* ValidateSelectHeads(int hs, int num_heads, int num_kv_heads) {
  if (hs != num_kv_heads && hs != num_heads) return "select_heads must be num_kv_heads or num_heads";
  if (num_heads / hs > 64) return "select_heads: at most 64 query heads per page list";
  return nullptr;
}

}  // namespace

const char* EntmaxPageStatsValidate(const EntmaxPageStatsParams& p) {
  if (const char* e = EntmaxPagedKvValidate(p.kv)) return e;
  if (p.kv.batch > 0 && p.kv.k_pool == nullptr) return "kv.k_pool is required";
  if (p.recent_pages < 1) return "recent_pages must be >= 1";
  if (p.kind == EntmaxStatKind::kMinMax) {
    if (p.stats.kmin == nullptr || p.stats.kmax == nullptr) return "stats.kmin and stats.kmax are required (kMinMax)";
  } else if (p.kind == EntmaxStatKind::kMeanStd) {
    if (p.stats.kmean == nullptr || p.stats.kstd == nullptr) return "stats.kmean and stats.kstd are required (kMeanStd)";
  } else {
    return "kind must be kMinMax or kMeanStd";
  }
  return nullptr;
}

const char* EntmaxCriticalityValidate(const EntmaxCriticalityParams& p) {
  if (const char* e = EntmaxPagedKvValidate(p.kv)) return e;
  if (const char* e = ValidateQuery(p.query, p.kv)) return e;
  if (const char* e = ValidateSelectHeads(p.select_heads, p.query.num_heads, p.kv.num_kv_heads)) return e;
  if (p.kv.batch > 0 && (p.stats.kmin == nullptr || p.stats.kmax == nullptr))
    return "stats.kmin and stats.kmax are required";
  if (p.kv.batch > 0 && p.u == nullptr) return "u is required";
  return nullptr;
}

const char* EntmaxTopkPackValidate(const EntmaxTopkPackParams& p) {
  if (p.batch < 0) return "batch must be >= 0";
  if (p.page_size <= 0) return "page_size must be >= 1";
  if (p.max_blocks_per_seq <= 0) return "max_blocks_per_seq must be >= 1";
  if (p.sel.select_heads <= 0) return "sel.select_heads must be >= 1";
  if (p.budget_pages < 1) return "budget_pages must be >= 1 (token_budget >= page_size)";
  if (p.sink_pages < 0 || p.sink_pages > 8) return "sink_pages must be in [0, 8]";
  if (p.min_context < 0) return "min_context must be >= 0";
  if (p.chunk_pages < -1) return "chunk_pages must be -1 (planner), 0 (one CTA per row) or a chunk width";
  if (p.batch > 0 && (p.u == nullptr || p.seq_lens == nullptr || p.sel.pages == nullptr ||
                      p.sel.page_count == nullptr || p.sel.sel_len == nullptr))
    return "u, seq_lens, sel.pages, sel.page_count and sel.sel_len are required";
  return nullptr;
}

}  // namespace kvstream
