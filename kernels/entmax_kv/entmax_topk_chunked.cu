// K3 topk_pack over many SMs (issue 9): a two-stage exact selection for long
// rows. One CTA per row (TopkSelectCtaKernel, entmax_topk.cu) keeps only
// B*Hs SMs busy (8 of 132 at B = 1) and is instruction-bound on its SM.
//
// Stage 1, TopkChunkKernel, grid (C, Hs, B): chunk c holds pages
// [c*W, min((c+1)*W, P_hist)) of the row; its candidates are the pages
// pg >= sinks; it selects its kc = min(k, valid) best (k = n - sinks; key
// ~EntmaxOrderedBits(U), ties to the lower page) and writes them ascending
// into the row's own page list at offset sum_{c' < c} k_c' (the offsets follow
// from T, W and k alone, so stage 2 recomputes them; sum_c k_c <= P_hist - sinks
// <= MB, so the candidates fit in the row: no extra scratch).
// Stage 2, TopkMergeKernel, grid (Hs, B): loads the row's candidates (page
// ascending: chunks in order, each ascending) into shared memory with their
// keys (U re-read from L2), selects the k best of them the same way, and
// writes sinks, the selection and the tail over the row.
// Exact: the global k best under the total order (key, page) are among the
// union of every chunk's k best under the same order, and both stages break
// ties by array order = page order, as the twin's stable sort does.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda_check.h"
#include "kernels/entmax_kv/entmax_dispatch.cuh"
#include "kernels/entmax_kv/entmax_topk.h"
#include "kernels/entmax_kv/entmax_topk_select.cuh"

namespace kvstream::entmax_detail {
namespace {

constexpr int kChunkThreads = 512;  // 4 histogram bins per thread
constexpr int kMergeThreads = 1024;
constexpr int kMaxChunkPages = 8 * kChunkThreads;  // stage 1: 8 keys per thread, loaded at once (16 KB)
constexpr int kMaxMergeBytes = 200 * 1024;       // stage 2 keys + page ids

// What both stages derive from the live length (same arithmetic in each).
struct RowPlan {
  EntmaxSeqPages s;
  bool dense;
  int n, sinks, k;
};

__device__ __forceinline__ RowPlan PlanRow(const EntmaxTopkPackParams& p, int32_t len) {
  RowPlan r;
  r.s = EntmaxPagesOf(len, p.page_size, p.max_blocks_per_seq);
  r.dense = r.s.tokens < p.min_context || p.budget_pages >= r.s.hist;
  r.n = r.dense ? r.s.hist : p.budget_pages;
  r.sinks = min(p.sink_pages, r.n);
  r.k = r.n - r.sinks;
  return r;
}

// Candidates of chunk c: its pages in [sinks, hist).
__device__ __forceinline__ int ChunkValid(const RowPlan& r, int c, int w) {
  return max(0, min((c + 1) * w, r.s.hist) - max(c * w, r.sinks));
}

// Stage 1. Dynamic shared memory: W keys.
__global__ void __launch_bounds__(kChunkThreads) TopkChunkKernel(const EntmaxTopkPackParams p, int w) {
  extern __shared__ uint32_t keys[];
  __shared__ RadixSelectSmem<kChunkThreads> sm;
  PdlWaitForPrerequisite();  // K2's U (PDL launch); every CTA waits before it may exit
  const int c = blockIdx.x, l = blockIdx.y, b = blockIdx.z, tid = threadIdx.x, MB = p.max_blocks_per_seq;
  const int64_t row = static_cast<int64_t>(b) * p.sel.select_heads + l;
  const int lo = c * w, span = min(w, MB - lo);  // readable part of the row
  const float* u = p.u + row * MB + lo;
  const int32_t len = p.seq_lens[b];
  // The U loads do not wait for seq_lens (any entry < MB is readable; those
  // past P_hist are masked below): one round trip, up to 8 loads per thread.
  float v[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = j * kChunkThreads + tid < span ? u[j * kChunkThreads + tid] : 0.0f;
  const RowPlan r = PlanRow(p, len);
  const int valid = ChunkValid(r, c, w);
  if (r.dense || r.k <= 0 || valid == 0) return;
  const int kc = min(r.k, valid);
  int off = 0;
  for (int cc = 0; cc < c; ++cc) off += min(r.k, ChunkValid(r, cc, w));
  int32_t* out = p.sel.pages + row * MB + off;
  const int first = max(lo, r.sinks);
  if (kc == valid) {  // every candidate of the chunk is kept
    for (int i = tid; i < valid; i += kChunkThreads) out[i] = first + i;
    return;
  }
  const int n = min(w, r.s.hist - lo);  // keys [lo, lo + n): sinks and nothing else masked
  const int sinks = r.sinks;
  auto key_of = [lo, sinks](int i, float x) { return lo + i < sinks ? kNoKey : ~EntmaxOrderedBits(x); };
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int i = j * kChunkThreads + tid;
    if (i < n) keys[i] = key_of(i, v[j]);
  }
  int take_eq = 0;
  const uint32_t thr = RadixSelect<kChunkThreads>(keys, n, kc, sm, &take_eq);
  RadixEmit<kChunkThreads>(keys, n, thr, take_eq, sm, out, [lo](int i) { return static_cast<int32_t>(lo + i); });
}

// Stage 2. Dynamic shared memory: cap keys, then cap page ids.
__global__ void __launch_bounds__(kMergeThreads) TopkMergeKernel(const EntmaxTopkPackParams p, int w, int cap) {
  extern __shared__ uint32_t keys[];
  int32_t* cand = reinterpret_cast<int32_t*>(keys + cap);
  __shared__ RadixSelectSmem<kMergeThreads> sm;
  PdlWaitForPrerequisite();  // stage 1's candidates
  const int l = blockIdx.x, b = blockIdx.y, tid = threadIdx.x, MB = p.max_blocks_per_seq;
  const int64_t row = static_cast<int64_t>(b) * p.sel.select_heads + l;
  const RowPlan r = PlanRow(p, p.seq_lens[b]);
  int32_t* out = p.sel.pages + row * MB;
  if (r.dense) {
    for (int pg = tid; pg < r.s.hist; pg += kMergeThreads) out[pg] = pg;
  } else if (r.k > 0) {
    const float* u = p.u + row * MB;
    int ncand = 0;
    const int chunks = (r.s.hist + w - 1) / w;
    for (int cc = 0; cc < chunks; ++cc) ncand += min(r.k, ChunkValid(r, cc, w));
    // Page ids then their U (L2: both just written), 8 of each in flight per thread.
    for (int base = 0; base < ncand; base += 8 * kMergeThreads) {
      int32_t pg[8];
      float x[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) pg[j] = base + j * kMergeThreads + tid < ncand ? out[base + j * kMergeThreads + tid] : -1;
#pragma unroll
      for (int j = 0; j < 8; ++j) x[j] = pg[j] >= 0 ? u[pg[j]] : 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int i = base + j * kMergeThreads + tid;
        if (i < ncand) cand[i] = pg[j], keys[i] = ~EntmaxOrderedBits(x[j]);
      }
    }
    __syncthreads();  // every candidate read from `out` before anyone overwrites it
    int32_t* sel = out + r.sinks;
    if (ncand == r.k) {
      for (int i = tid; i < ncand; i += kMergeThreads) sel[i] = cand[i];
    } else {
      int take_eq = 0;
      const uint32_t thr = RadixSelect<kMergeThreads>(keys, ncand, r.k, sm, &take_eq);
      RadixEmit<kMergeThreads>(keys, ncand, thr, take_eq, sm, sel, [cand](int i) { return cand[i]; });
    }
  }
  // Sinks and the tail: after the barrier above (their slots may hold candidates).
  if (!r.dense && tid < r.sinks) out[tid] = tid;
  if (tid == 0) {
    int cnt = r.n;
    if (r.s.pages > 0) out[cnt++] = r.s.pages - 1;  // the tail, always attended (§4 step 3a)
    p.sel.page_count[row] = cnt;
    p.sel.sel_len[row] = r.s.pages > 0 ? r.n * p.page_size + r.s.tail_len : 0;
  }
}

}  // namespace
}  // namespace kvstream::entmax_detail

namespace kvstream {

namespace entmax_detail {

// Launches the two stages with chunk width w (> 0); false (nothing launched)
// when stage 2's candidates would not fit in shared memory.
bool LaunchEntmaxTopkChunked(const EntmaxTopkPackParams& p, int w, cudaStream_t stream, cudaError_t* err) {
  const int MB = p.max_blocks_per_seq;
  if (w <= 0 || w > kMaxChunkPages) return false;
  const int chunks = (MB + w - 1) / w;
  const int cap = std::min<int64_t>(static_cast<int64_t>(chunks) * std::min(p.budget_pages, w), MB);
  const size_t merge_smem = static_cast<size_t>(cap) * 8, chunk_smem = static_cast<size_t>(w) * 4;
  if (merge_smem > kMaxMergeBytes || chunks > 65535) return false;
  *err = cudaSuccess;
  if (chunk_smem > 48 * 1024) {
    *err = cudaFuncSetAttribute(TopkChunkKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(chunk_smem));
  }
  if (*err == cudaSuccess && merge_smem > 48 * 1024) {
    *err = cudaFuncSetAttribute(TopkMergeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(merge_smem));
  }
  if (*err == cudaSuccess) {
    *err = LaunchPdl(TopkChunkKernel, dim3(chunks, p.sel.select_heads, p.batch), dim3(kChunkThreads), chunk_smem,
                     stream, p, w);
  }
  if (*err == cudaSuccess) {
    *err = LaunchPdl(TopkMergeKernel, dim3(p.sel.select_heads, p.batch), dim3(kMergeThreads),
                     std::max<size_t>(merge_smem, 4), stream, p, w, cap);
  }
  return true;
}

}  // namespace entmax_detail
}  // namespace kvstream
