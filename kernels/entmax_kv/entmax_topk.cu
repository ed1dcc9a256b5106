// K3 topk_pack on the GPU (entmax_topk.h; K2 is in entmax_criticality.cu). Rows of
// >= 16384 pages first try the two-stage selection of entmax_topk_chunked.cu.
// Below that (and for many rows), TopkSelectCtaKernel: one 1024-thread CTA per
// row, the row's keys in shared memory, RangedSelect (entmax_topk_select.cuh:
// one linear-bin pass over the row's score range, the threshold bin's keys
// ranked exactly) and the ordered emit.
// Long rows, few of them: TopkSelectClusterKernel (a cluster of 8 CTAs per row, keys in shared memory,
// 32-bit radix; below) for rows up to ~400K pages; else TopkPackKernel, one CTA per (sequence, selection
// head): instead of sorting up to P_hist pages, the (n - sinks)-th smallest EntmaxPageRankKey is found by radix
// selection and every page whose key is <= it is emitted in page order: the
// set the twin's stable sort picks, since keys are unique. The block helpers
// are AKV's (kernels/akv/akv_device.cuh; generic, reused rather than copied).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include "kernels/akv/akv_device.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/entmax_kv/entmax_dispatch.cuh"
#include "kernels/entmax_kv/entmax_topk.h"
#include "kernels/entmax_kv/entmax_topk_select.cuh"

namespace kvstream::entmax_detail {
namespace {

constexpr int kPackThreads = 256;

__global__ void __launch_bounds__(kPackThreads) TopkPackKernel(const EntmaxTopkPackParams p) {
  __shared__ akv_detail::SelectScratch ss;
  __shared__ akv_detail::EmitScratch es;
  const int b = blockIdx.y, l = blockIdx.x, MB = p.max_blocks_per_seq;
  const int64_t row = static_cast<int64_t>(b) * p.sel.select_heads + l;
  const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], p.page_size, MB);
  const bool dense = s.tokens < p.min_context || p.budget_pages >= s.hist;
  const int n = dense ? s.hist : p.budget_pages;
  const int sinks = min(p.sink_pages, n);
  const float* u = p.u + row * MB;
  int32_t* out = p.sel.pages + row * MB;
  int cnt = 0;
  if (dense) {
    for (int pg = threadIdx.x; pg < s.hist; pg += blockDim.x) out[pg] = pg;
    cnt = s.hist;
  } else {
    const int k = n - sinks, ncand = s.hist - sinks;
    auto key = [&](int pg) { return EntmaxPageRankKey(u[pg], pg); };
    uint64_t thr = 0;
    if (k > 0) {
      thr = k < ncand ? akv_detail::BlockKthSmallest<64>(s.hist, k, [&](int pg) { return pg >= sinks; }, key, &ss)
                      : ~0ull;
    }
    cnt = akv_detail::BlockEmit(
        s.hist, [&](int pg) { return pg < sinks || (k > 0 && key(pg) <= thr); },
        [](int pg) { return static_cast<int32_t>(pg); }, out, &es);
  }
  if (threadIdx.x == 0) {
    if (s.pages > 0) out[cnt++] = s.pages - 1;  // the tail, always attended (§4 step 3a)
    p.sel.page_count[row] = cnt;
    p.sel.sel_len[row] = s.pages > 0 ? n * p.page_size + s.tail_len : 0;
  }
}

// ---- K3, cluster radix select (issue 9) -------------------------------------------
// A row (b, s) is spread over a cluster of kSelCluster CTAs (one CTA per row
// used 8 of 132 SMs at B = 1): CTA rank r holds the keys of pages
// [r*W, (r+1)*W) in shared memory as 32-bit keys: sinks get key 0 (below every
// real key, see below), page pg >= sinks gets ~EntmaxOrderedBits(U) (smaller =
// preferred). The n-th smallest key thr is found in 3 radix passes (11, 11, 10
// bits): each CTA builds its histogram (RadixHistAdd: aggregated adds for the
// crowded bins of equal exponents), every CTA sums the cluster's histograms
// through distributed shared memory and finds the same bin. Then every page
// with key < thr is taken, plus the first (lowest page index) `kk` pages with
// key == thr: exactly the twin's stable sort on (key, page). Emission is in
// page order: offsets are prefix sums over the cluster's CTAs, then warps.
// ~EntmaxOrderedBits(u) >= 0x007fffff for every float (NaN maps to -inf), so
// key 0 is free for sinks.
constexpr int kSelThreads = 1024;
constexpr int kSelWarps = kSelThreads / 32;
constexpr int kSelBins = 2048;  // 2 per thread
constexpr int kSelCluster = 8;

// Block-wide: the bin holding the kk-th key (1-based) in bin order, from the
// cluster totals a0, a1 of bins 2t, 2t+1 held by thread t; writes *bin and the
// keys in earlier bins to *before (one thread does), then a barrier.
__device__ void FindBin(uint32_t a0, uint32_t a1, int kk, uint32_t* wsum, uint32_t* bin, uint32_t* before) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const uint32_t tot = a0 + a1;
  uint32_t inc = tot;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t v = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += v;
  }
  if (lane == 31) wsum[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    const uint32_t w = wsum[lane];
    uint32_t wi = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t v = __shfl_up_sync(0xffffffffu, wi, o);
      if (lane >= o) wi += v;
    }
    wsum[lane] = wi - w;  // exclusive prefix of the warps
  }
  __syncthreads();
  const uint32_t excl = wsum[warp] + inc - tot, k = static_cast<uint32_t>(kk);
  if (excl < k && k <= excl + a0) *bin = 2 * tid, *before = excl;
  else if (excl + a0 < k && k <= excl + tot) *bin = 2 * tid + 1, *before = excl + a0;
  __syncthreads();
}

// This warp's slice [*lo, *hi) of n keys (slices of whole 32-key rows, warp
// order = key order) and how many of its keys are < thr and == thr.
__device__ __forceinline__ void CountWarpSlice(const uint32_t* keys, int n, uint32_t thr, int* lo, int* hi,
                                               int* c_lt, int* c_eq) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int w = ((n + kSelWarps - 1) / kSelWarps + 31) / 32 * 32;
  *lo = min(warp * w, n), *hi = min(*lo + w, n);
  int lt = 0, eq = 0;
  for (int base = *lo; base < *hi; base += 32) {
    const int i = base + lane;
    const uint32_t key = i < *hi ? keys[i] : 0xffffffffu;
    lt += __popc(__ballot_sync(0xffffffffu, i < *hi && key < thr));
    eq += __popc(__ballot_sync(0xffffffffu, i < *hi && key == thr));
  }
  *c_lt = lt, *c_eq = eq;
}

__global__ void __cluster_dims__(kSelCluster, 1, 1) __launch_bounds__(kSelThreads)
    TopkSelectClusterKernel(const EntmaxTopkPackParams p) {
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  extern __shared__ uint32_t keys[];  // [W] keys of this CTA's pages
  __shared__ uint32_t hist[kSelBins];
  __shared__ uint32_t wsum[kSelWarps];
  __shared__ uint32_t sel_bin, sel_before;
  __shared__ int w_lt[kSelWarps], w_eq[kSelWarps];
  __shared__ int cta_lt, cta_eq;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int rank = static_cast<int>(cluster.block_rank());
  const int b = blockIdx.y, l = blockIdx.x / kSelCluster, MB = p.max_blocks_per_seq;
  const int64_t row = static_cast<int64_t>(b) * p.sel.select_heads + l;
  const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], p.page_size, MB);
  const bool dense = s.tokens < p.min_context || p.budget_pages >= s.hist;
  const int n = dense ? s.hist : p.budget_pages;
  const int sinks = min(p.sink_pages, n);
  const float* u = p.u + row * MB;
  int32_t* out = p.sel.pages + row * MB;
  // This CTA's pages [lo, hi); W is a multiple of 32 (warp-sized steps).
  const int W = ((s.hist + kSelCluster - 1) / kSelCluster + 31) / 32 * 32;
  const int lo = min(rank * W, s.hist), hi = min(lo + W, s.hist), cnt_here = hi - lo;
  if (dense) {
    for (int pg = lo + tid; pg < hi; pg += kSelThreads) out[pg] = pg;
  } else {
    // Up to eight loads in flight per thread (the row comes from L2: K2 just wrote it).
    for (int base = 0; base < cnt_here; base += 8 * kSelThreads) {
      float v[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int i = base + k * kSelThreads + tid;
        v[k] = i < cnt_here ? u[lo + i] : 0.0f;
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int i = base + k * kSelThreads + tid;
        if (i < cnt_here) keys[i] = lo + i < sinks ? 0u : ~EntmaxOrderedBits(v[k]);
      }
    }
    uint32_t prefix = 0, mask = 0;
    int kk = n;  // rank (1-based) of the threshold among the keys matching prefix
#pragma unroll 1
    for (int pass = 0; pass < 3; ++pass) {
      const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0), bits = pass == 2 ? 10 : 11;
      const uint32_t dmask = (1u << bits) - 1;
      hist[2 * tid] = 0, hist[2 * tid + 1] = 0;
      __syncthreads();  // also: keys loaded
      for (int base = warp * 32; base < cnt_here; base += kSelThreads) {
        const int i = base + lane;
        const uint32_t key = i < cnt_here ? keys[i] : 0u;
        const uint32_t bin = i < cnt_here && (key & mask) == prefix ? (key >> shift) & dmask : 0xffffffffu;
        RadixHistAdd(hist, bin, lane);
      }
      cluster.sync();  // every CTA's histogram complete and visible
      uint32_t a0 = 0, a1 = 0;
#pragma unroll
      for (int r = 0; r < kSelCluster; ++r) {
        const uint2 h = *reinterpret_cast<const uint2*>(cluster.map_shared_rank(hist, r) + 2 * tid);
        a0 += h.x, a1 += h.y;
      }
      cluster.sync();  // nobody clears its histogram while another CTA reads it
      FindBin(a0, a1, kk, wsum, &sel_bin, &sel_before);
      prefix |= sel_bin << shift;
      mask |= dmask << shift;
      kk -= static_cast<int>(sel_before);
    }
    const uint32_t thr = prefix;  // the n-th smallest key; take the first kk keys equal to it
    // Counts per warp (warp w: a contiguous slice of this CTA's pages), per CTA.
    int wlo, whi, c_lt, c_eq;
    CountWarpSlice(keys, cnt_here, thr, &wlo, &whi, &c_lt, &c_eq);
    if (lane == 0) w_lt[warp] = c_lt, w_eq[warp] = c_eq;
    __syncthreads();
    if (tid == 0) {
      int a = 0, e = 0;
      for (int w = 0; w < kSelWarps; ++w) a += w_lt[w], e += w_eq[w];
      cta_lt = a, cta_eq = e;
    }
    cluster.sync();  // CTA totals visible
    int lt_before = 0, eq_before = 0;
    for (int r = 0; r < rank; ++r) {
      lt_before += *cluster.map_shared_rank(&cta_lt, r);
      eq_before += *cluster.map_shared_rank(&cta_eq, r);
    }
    for (int w = 0; w < warp; ++w) lt_before += w_lt[w], eq_before += w_eq[w];
    int pos = lt_before + min(eq_before, kk);
    const unsigned below = (1u << lane) - 1;
    for (int base = wlo; base < whi; base += 32) {
      const int i = base + lane;
      const uint32_t key = i < whi ? keys[i] : 0xffffffffu;
      const unsigned eq = __ballot_sync(0xffffffffu, i < whi && key == thr);
      const bool take = i < whi && (key < thr || (key == thr && eq_before + __popc(eq & below) < kk));
      const unsigned tk = __ballot_sync(0xffffffffu, take);
      if (take) out[pos + __popc(tk & below)] = lo + i;
      pos += __popc(tk);
      eq_before += __popc(eq);
    }
    cluster.sync();  // keep this CTA's shared memory alive until the others read it
  }
  if (rank == 0 && tid == 0) {  // out[0, n) is written by the cluster; the tail goes after it
    int cnt = n;
    if (s.pages > 0) out[cnt++] = s.pages - 1;  // the tail, always attended (§4 step 3a)
    p.sel.page_count[row] = cnt;
    p.sel.sel_len[row] = s.pages > 0 ? n * p.page_size + s.tail_len : 0;
  }
}

// One CTA per row (no cluster): the row's keys in shared memory, RangedSelect
// (one linear-bin pass over the row's key range, then the threshold bin's few
// keys ranked; the 3-pass radix only for heavy ties) and the ordered emit of
// entmax_topk_select.cuh. Measured faster than the cluster wherever rows are
// short or there are many of them (H100: cluster-wide barriers and one
// 1024-thread CTA per SM cost ~20 us per wave).
__global__ void __launch_bounds__(kSelThreads) TopkSelectCtaKernel(const EntmaxTopkPackParams p) {
  extern __shared__ uint32_t keys[];  // [P_hist]
  __shared__ RangedSelectSmem<kSelThreads> sm;
  const int tid = threadIdx.x;
  const int b = blockIdx.y, l = blockIdx.x, MB = p.max_blocks_per_seq;
  const int64_t row = static_cast<int64_t>(b) * p.sel.select_heads + l;
  const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], p.page_size, MB);  // host-written: before the wait
  PdlWaitForPrerequisite();  // K2's U (PDL launch)
  const bool dense = s.tokens < p.min_context || p.budget_pages >= s.hist;
  const int n = dense ? s.hist : p.budget_pages;
  const int sinks = min(p.sink_pages, n);
  const float* u = p.u + row * MB;
  int32_t* out = p.sel.pages + row * MB;
  if (dense) {
    for (int pg = tid; pg < s.hist; pg += kSelThreads) out[pg] = pg;
  } else {
    const int hist_n = s.hist;  // > n >= 1 here
    // Eight loads in flight per thread before any store (the row is in L2: K2
    // just wrote it); the candidates' key range on the way (RangedSelect).
    uint32_t lo = 0xffffffffu, hi = 0u;
    for (int base = 0; base < hist_n; base += 8 * kSelThreads) {
      float v[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int pg = base + k * kSelThreads + tid;
        v[k] = pg < hist_n ? u[pg] : 0.0f;
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int pg = base + k * kSelThreads + tid;
        if (pg < hist_n) {
          const uint32_t key = pg < sinks ? 0u : ~EntmaxOrderedBits(v[k]);
          keys[pg] = key;
          if (pg >= sinks) lo = min(lo, key), hi = max(hi, key);
        }
      }
    }
    int take_eq = 0;
    const uint32_t thr = RangedSelect<kSelThreads>(keys, hist_n, sinks, n, sm, lo, hi, &take_eq);
    RadixEmit<kSelThreads>(keys, hist_n, thr, take_eq, sm.radix, out, [](int pg) { return static_cast<int32_t>(pg); });
  }
  if (tid == 0) {  // out[0, n) is written by other threads; the tail goes after it
    int cnt = n;
    if (s.pages > 0) out[cnt++] = s.pages - 1;  // the tail, always attended (§4 step 3a)
    p.sel.page_count[row] = cnt;
    p.sel.sel_len[row] = s.pages > 0 ? n * p.page_size + s.tail_len : 0;
  }
}

// Largest row (bytes) TopkSelectCtaKernel keeps in shared memory.
constexpr int kSelMaxRowBytes = 200 * 1024;

// Largest key slice (bytes) TopkSelectClusterKernel keeps per CTA in shared memory.
constexpr int kSelMaxSliceBytes = 200 * 1024;

}  // namespace
}  // namespace kvstream::entmax_detail

namespace kvstream {
namespace entmax_detail {
bool LaunchEntmaxTopkChunked(const EntmaxTopkPackParams& p, int w, cudaStream_t stream, cudaError_t* err);
}  // namespace entmax_detail

cudaError_t LaunchEntmaxTopkPack(const EntmaxTopkPackParams& p, cudaStream_t stream) {
  if (EntmaxTopkPackValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  if (p.batch > 65535) return cudaErrorInvalidValue;
  // Long rows: two stages over many SMs (entmax_topk_chunked.cu); declined
  // (nothing launched) when stage 2's candidates would not fit in shared memory.
  const int w = p.chunk_pages >= 0 ? p.chunk_pages : EntmaxTopkChunkPages(p.max_blocks_per_seq, p.budget_pages);
  if (cudaError_t err = cudaSuccess; w > 0 && entmax_detail::LaunchEntmaxTopkChunked(p, w, stream, &err)) return err;
  // Keys per CTA: W = ceil(MB / 8) rounded up to 32 (TopkSelectClusterKernel).
  const size_t row = static_cast<size_t>(p.max_blocks_per_seq) * sizeof(uint32_t);
  const size_t slice = static_cast<size_t>(((p.max_blocks_per_seq + entmax_detail::kSelCluster - 1) /
                                                entmax_detail::kSelCluster + 31) / 32 * 32) * sizeof(uint32_t);
  // H100 bench (issue 9): the cluster wins only for long rows and few of them
  // (B = 1, 512K: 25 us, vs 60 us for one CTA when it still used __match_any_sync);
  // one CTA per row elsewhere (1 x 128K: 17 vs 21 us,
  // 8 x 128K: 19 vs 101 us).
  const bool cluster = p.max_blocks_per_seq > 16384 && static_cast<int64_t>(p.batch) * p.sel.select_heads <= 16;
  if (!cluster && row <= entmax_detail::kSelMaxRowBytes) {
    if (row > 48 * 1024) {
      KV_CUDA_CHECK(cudaFuncSetAttribute(entmax_detail::TopkSelectCtaKernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(row)));
    }
    return entmax_detail::LaunchPdl(entmax_detail::TopkSelectCtaKernel, dim3(p.sel.select_heads, p.batch),
                                    dim3(entmax_detail::kSelThreads), row, stream, p);
  }
  if (slice <= entmax_detail::kSelMaxSliceBytes) {
    if (slice > 48 * 1024) {
      KV_CUDA_CHECK(cudaFuncSetAttribute(entmax_detail::TopkSelectClusterKernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(slice)));
    }
    entmax_detail::TopkSelectClusterKernel<<<dim3(p.sel.select_heads * entmax_detail::kSelCluster, p.batch),
                                             entmax_detail::kSelThreads, slice, stream>>>(p);
    return cudaGetLastError();
  }
  // Rows past ~400K pages: the global-memory radix select (64-bit keys).
  entmax_detail::TopkPackKernel<<<dim3(p.sel.select_heads, p.batch), entmax_detail::kPackThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
