// Top-k page selection (entmax_kv.md §4 step 3a, §7 K2 and K3). Shapes and
// letters: entmax_kv_layout.h.
//
// K2 page_criticality: for selection head s (query heads h of its group,
// h in [s*H/Hs, (s+1)*H/Hs)) and historical page p < P_hist
//   U[b,s,p] = max over those h of  sum_d (q_hd >= 0 ? q_hd*kmax_pgd : q_hd*kmin_pgd)
// i.e. the Quest upper bound of q.k over the page, the sign picking the
// endpoint; the group max is SHARED_KV's ranking (§6 "GQA"). Like upstream it
// leaves out 1/sqrt(D): the ranking is the same. fp32; entries p >= P_hist are
// not written.
//
// K3 topk_pack: n = min(budget_pages, P_hist). Dense fallback (all N pages)
// when T < min_context or budget_pages >= P_hist (§4 step 2). Otherwise the
// first min(sink_pages, n) pages (sinks are counted in n, §5), then the
// n - sinks highest U among the remaining historical pages (ties to the lower
// page index), then the tail; emitted ascending. page_count = n + 1,
// sel_len = n*P + tail_len.
#pragma once

#include "kernels/entmax_kv/entmax_kv_layout.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_ENTMAX_KV_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct EntmaxCriticalityParams {
  EntmaxPagedKv kv;           // block_table, seq_lens and sizes (pools unused)
  EntmaxQuery query;          // q [B, H, D]
  EntmaxStatsPools stats;     // kmin, kmax [NB, Hkv, D] dtype
  float* u = nullptr;         // [B, Hs, MB] fp32 out
  int select_heads = 0;       // Hs: Hkv or H
};

struct EntmaxTopkPackParams {
  const float* u = nullptr;           // [B, Hs, MB] fp32 (K2's output)
  const int32_t* seq_lens = nullptr;  // [B] live T
  int batch = 0;                      // B
  int page_size = 0;                  // P
  int max_blocks_per_seq = 0;         // MB
  EntmaxSelection sel;                // out: pages / page_count / sel_len, select_heads = Hs
  int budget_pages = 0;               // floor(token_budget / P), >= 1
  int sink_pages = 0;                 // §5 sink_pages (0-8)
  int min_context = 0;                // §5 min_context: T below it attends all pages
  // GPU only (the twin ignores it; results are identical): -1 = planner
  // (EntmaxTopkChunkPages), 0 = one CTA per row, > 0 = two-stage selection
  // with chunks of this many pages (tests force small chunks).
  int chunk_pages = -1;
};

const char* EntmaxCriticalityValidate(const EntmaxCriticalityParams& p);
const char* EntmaxTopkPackValidate(const EntmaxTopkPackParams& p);

// CPU twins (host pointers). K2: direct sums over d in order; K3: std::stable_sort
// on EntmaxPageRankKey (the kernel's radix selection picks the same set).
// False (nothing written) on invalid params or an out-of-range page id.
bool EntmaxCriticalityRef(const EntmaxCriticalityParams& p);
bool EntmaxTopkPackRef(const EntmaxTopkPackParams& p);

// K3's chunk width W for rows of MB pages and the given budget: 0 (one CTA
// per row) below 4096 pages, else the power of two >= sqrt(MB * budget_pages)
// in [256, 4096] (stage 1 sweeps W keys per CTA, stage 2 (MB/W)*k: balanced).
// A pure function of shapes, so a captured graph keeps its grid.
int EntmaxTopkChunkPages(int max_blocks_per_seq, int budget_pages);

#if defined(KVSTREAM_ENTMAX_KV_HAS_LAUNCHER)
// K2: grid (ceil(MB/pages per CTA), Hs, B); a warp per page.
cudaError_t LaunchEntmaxCriticality(const EntmaxCriticalityParams& p, cudaStream_t stream);
// K3: rows of >= 4096 pages (or p.chunk_pages > 0): two stages over many SMs
// (entmax_topk_chunked.cu: grid (C, Hs, B) chunk selections written into
// sel.pages, then (Hs, B) merges; no scratch beyond sel.pages); else one CTA
// per (b, s): radix selection of the n-th best key, ordered emit.
cudaError_t LaunchEntmaxTopkPack(const EntmaxTopkPackParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
