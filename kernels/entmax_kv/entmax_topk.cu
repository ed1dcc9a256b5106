// K2 page_criticality and K3 topk_pack on the GPU (entmax_topk.h).
//
// K2: a warp per page; each lane holds D/32 dims of the page's kmin/kmax and
// of the group's queries (fp32 in shared memory), one warp reduction per
// query head; the group max is taken in registers.
// K2 fast (CriticalityVecKernel, H/Hs <= 8): a group of D*sizeof(T)/16 lanes
// per page row, 16-byte loads of kmin and kmax, 64 pages per CTA all in flight
// (2-8 per group: bf16 D=128 gives 8 groups of 16 lanes, 8 pages each),
// the list's queries in registers; one row load serves every head of the list.
// K3: TopkSelectClusterKernel (a cluster of 8 CTAs per row, keys in shared memory,
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

namespace kvstream::entmax_detail {
namespace {

constexpr int kCritThreads = 128;
constexpr int kCritPagesPerCta = 16;
constexpr int kPackThreads = 256;

template <class T, int D>
__global__ void __launch_bounds__(kCritThreads) CriticalityKernel(const EntmaxCriticalityParams p) {
  static_assert(D % 32 == 0, "lanes split D evenly");
  constexpr int kPerLane = D / 32;
  extern __shared__ float qs[];  // [H/Hs, D] fp32 queries of this selection head
  const EntmaxPagedKv& kv = p.kv;
  const int b = blockIdx.z, l = blockIdx.y, H = p.query.num_heads;
  const int per_list = H / p.select_heads, group = H / kv.num_kv_heads;
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const T* q = static_cast<const T*>(p.query.q) + b * qsb;
  for (int i = threadIdx.x; i < per_list * D; i += blockDim.x) {
    qs[i] = ToF(q[(l * per_list + i / D) * qsh + i % D]);
  }
  __syncthreads();
  const int MB = kv.max_blocks_per_seq;
  const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int end = min(s.hist, static_cast<int>(blockIdx.x + 1) * kCritPagesPerCta);
  const T* kmin = static_cast<const T*>(p.stats.kmin);
  const T* kmax = static_cast<const T*>(p.stats.kmax);
  for (int pg = blockIdx.x * kCritPagesPerCta + warp; pg < end; pg += kCritThreads / 32) {
    const int64_t phys = kv.block_table[static_cast<int64_t>(b) * MB + pg];
    float best = 0.0f;
    for (int i = 0; i < per_list; ++i) {
      const int64_t st = (phys * kv.num_kv_heads + (l * per_list + i) / group) * D;
      float u = 0.0f;
#pragma unroll
      for (int k = 0; k < kPerLane; ++k) {
        const int d = lane + 32 * k;
        const float qd = qs[i * D + d];
        u = fmaf(qd, ToF(qd >= 0.0f ? kmax[st + d] : kmin[st + d]), u);
      }
      u = WarpSum(u);
      best = i == 0 ? u : fmaxf(best, u);
    }
    if (lane == 0) p.u[(static_cast<int64_t>(b) * p.select_heads + l) * MB + pg] = best;
  }
}

constexpr int kVecPagesPerCta = 64;

template <class T, int D, int NH>
__global__ void __launch_bounds__(kCritThreads) CriticalityVecKernel(const EntmaxCriticalityParams p) {
  constexpr int kVec = 16 / sizeof(T), kLanes = D / kVec, kGroups = kCritThreads / kLanes;
  static_assert(kLanes <= 32 && 32 % kLanes == 0, "a page row is a power-of-two lane group within a warp");
  const EntmaxPagedKv& kv = p.kv;
  const int b = blockIdx.z, l = blockIdx.y, H = p.query.num_heads;
  const int nh = H / p.select_heads, g = l * nh / (H / kv.num_kv_heads);
  const int tid = threadIdx.x, sub = tid % kLanes, grp = tid / kLanes;
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const T* q = static_cast<const T*>(p.query.q) + b * qsb + static_cast<int64_t>(l) * nh * qsh + sub * kVec;
  float qr[NH][kVec];
#pragma unroll
  for (int i = 0; i < NH; ++i) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) qr[i][e] = i < nh ? ToF(q[i * qsh + e]) : 0.0f;
  }
  const int MB = kv.max_blocks_per_seq;
  const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
  const int first = blockIdx.x * kVecPagesPerCta, end = min(s.hist, first + kVecPagesPerCta);
  // The CTA's page ids first (one coalesced load, issued beside the seq_lens
  // load: any entry < MB is readable, and entries past the sequence are never
  // dereferenced), so the stats loads below are one round trip, not two.
  __shared__ int64_t rows[kVecPagesPerCta];  // uint4 index of (page, g, lane 0)
  if (tid < kVecPagesPerCta && first + tid < MB) {
    rows[tid] = (static_cast<int64_t>(kv.block_table[static_cast<int64_t>(b) * MB + first + tid]) * kv.num_kv_heads + g) *
                kLanes;
  }
  __syncthreads();
  if (first >= end) return;
  const uint4* kmin = static_cast<const uint4*>(p.stats.kmin);
  const uint4* kmax = static_cast<const uint4*>(p.stats.kmax);
  float* urow = p.u + (static_cast<int64_t>(b) * p.select_heads + l) * MB;
  // Each group owns kPer consecutive pages of the CTA, all loads issued first.
  constexpr int kPer = kVecPagesPerCta / kGroups;
  static_assert(kVecPagesPerCta % kGroups == 0, "pages split evenly over the groups");
  constexpr int kBatch = kPer < 8 ? kPer : 8;  // at most 8 pages (16 uint4) in registers
#pragma unroll 1
  for (int k0 = 0; k0 < kPer; k0 += kBatch) {
    uint4 lo[kBatch], hi[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int i = min(grp * kPer + k0 + k, end - first - 1);  // past the end: reload the last page, write nothing
      lo[k] = kmin[rows[i] + sub], hi[k] = kmax[rows[i] + sub];
    }
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      float mn[kVec], mx[kVec];
      Vec16<T>::Load(lo[k], mn);
      Vec16<T>::Load(hi[k], mx);
      float best = 0.0f;
#pragma unroll
      for (int i = 0; i < NH; ++i) {
        float u = 0.0f;
#pragma unroll
        for (int e = 0; e < kVec; ++e) u = fmaf(qr[i][e], qr[i][e] >= 0.0f ? mx[e] : mn[e], u);
#pragma unroll
        for (int o = kLanes / 2; o > 0; o >>= 1) u += __shfl_xor_sync(0xffffffffu, u, o);
        if (i < nh) best = i == 0 ? u : fmaxf(best, u);
      }
      const int pg = first + grp * kPer + k0 + k;
      if (sub == 0 && pg < end) urow[pg] = best;
    }
  }
}

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
// bits): each CTA builds its histogram (HistAdd: aggregated adds for the
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

// hist[bin] += 1 for every lane with bin != ~0u. The first passes see one or
// two crowded bins (equal sign and exponent): two rounds of "lanes sharing the
// first pending lane's bin add once" take those, the rest add alone.
// (__match_any_sync did the same but measured ~20 us at 8K keys per CTA on the
// H100: it is a low-throughput instruction.)
__device__ __forceinline__ void HistAdd(uint32_t* hist, uint32_t bin, int lane) {
  unsigned todo = __ballot_sync(0xffffffffu, bin != 0xffffffffu);
#pragma unroll
  for (int round = 0; round < 2; ++round) {
    if (todo == 0) return;
    const int src = __ffs(todo) - 1;
    const uint32_t lead = __shfl_sync(0xffffffffu, bin, src);
    const unsigned same = __ballot_sync(0xffffffffu, bin == lead) & todo;
    if (lane == src) atomicAdd(&hist[lead], static_cast<uint32_t>(__popc(same)));
    todo &= ~same;
  }
  if (todo & (1u << lane)) atomicAdd(&hist[bin], 1u);
}

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
        HistAdd(hist, bin, lane);
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
    const int Ww = ((cnt_here + kSelWarps - 1) / kSelWarps + 31) / 32 * 32;
    const int wlo = min(warp * Ww, cnt_here), whi = min(wlo + Ww, cnt_here);
    int c_lt = 0, c_eq = 0;
    for (int base = wlo; base < whi; base += 32) {
      const int i = base + lane;
      const uint32_t key = i < whi ? keys[i] : 0xffffffffu;
      c_lt += __popc(__ballot_sync(0xffffffffu, i < whi && key < thr));
      c_eq += __popc(__ballot_sync(0xffffffffu, i < whi && key == thr));
    }
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

// One CTA per row (no cluster): the same selection with the whole row in one
// CTA's shared memory. Measured faster than the cluster below wherever rows
// are short or there are many of them (H100: cluster-wide barriers and
// one 1024-thread CTA per SM cost ~20 us per wave).
__global__ void __launch_bounds__(kSelThreads) TopkSelectCtaKernel(const EntmaxTopkPackParams p) {
  extern __shared__ uint32_t keys[];  // [P_hist]
  __shared__ uint32_t hist[kSelBins];
  // (FindBin reads this thread's two bins before its first barrier.)
  __shared__ uint32_t wsum[kSelWarps];
  __shared__ uint32_t sel_bin, sel_before;
  __shared__ int w_lt[kSelWarps], w_eq[kSelWarps];
  GridDepWait();  // K2's U (PDL launch)
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int b = blockIdx.y, l = blockIdx.x, MB = p.max_blocks_per_seq;
  const int64_t row = static_cast<int64_t>(b) * p.sel.select_heads + l;
  const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], p.page_size, MB);
  const bool dense = s.tokens < p.min_context || p.budget_pages >= s.hist;
  const int n = dense ? s.hist : p.budget_pages;
  const int sinks = min(p.sink_pages, n);
  const float* u = p.u + row * MB;
  int32_t* out = p.sel.pages + row * MB;
  if (dense) {
    for (int pg = tid; pg < s.hist; pg += kSelThreads) out[pg] = pg;
  } else {
    const int hist_n = s.hist;  // > n >= 1 here
    for (int pg = tid; pg < hist_n; pg += kSelThreads) keys[pg] = pg < sinks ? 0u : ~EntmaxOrderedBits(u[pg]);
    uint32_t prefix = 0, mask = 0;
    int kk = n;  // rank (1-based) of the threshold among the keys still matching prefix
#pragma unroll 1
    for (int pass = 0; pass < 3; ++pass) {
      const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0), bits = pass == 2 ? 10 : 11;
      const uint32_t dmask = (1u << bits) - 1;
      hist[2 * tid] = 0, hist[2 * tid + 1] = 0;
      __syncthreads();  // also: keys loaded, previous pass's FindBin outputs read
      for (int base = warp * 32; base < hist_n; base += kSelThreads) {
        const int pg = base + lane;
        const uint32_t key = pg < hist_n ? keys[pg] : 0u;
        const uint32_t bin = pg < hist_n && (key & mask) == prefix ? (key >> shift) & dmask : 0xffffffffu;
        HistAdd(hist, bin, lane);
      }
      __syncthreads();
      FindBin(hist[2 * tid], hist[2 * tid + 1], kk, wsum, &sel_bin, &sel_before);
      prefix |= sel_bin << shift;
      mask |= dmask << shift;
      kk -= static_cast<int>(sel_before);
    }
    const uint32_t thr = prefix;  // the n-th smallest key; take the first kk keys equal to it
    // Ordered emit: warp w owns pages [w*W, (w+1)*W); count, prefix over warps, write.
    const int W = ((hist_n + kSelWarps - 1) / kSelWarps + 31) / 32 * 32;
    const int lo = min(warp * W, hist_n), hi = min(lo + W, hist_n);
    int c_lt = 0, c_eq = 0;
    for (int base = lo; base < hi; base += 32) {
      const int pg = base + lane;
      const uint32_t key = pg < hi ? keys[pg] : 0xffffffffu;
      c_lt += __popc(__ballot_sync(0xffffffffu, pg < hi && key < thr));
      c_eq += __popc(__ballot_sync(0xffffffffu, pg < hi && key == thr));
    }
    if (lane == 0) w_lt[warp] = c_lt, w_eq[warp] = c_eq;
    __syncthreads();
    int lt_before = 0, eq_before = 0;
    for (int w = 0; w < warp; ++w) lt_before += w_lt[w], eq_before += w_eq[w];
    int pos = lt_before + min(eq_before, kk);
    const unsigned below = (1u << lane) - 1;
    for (int base = lo; base < hi; base += 32) {
      const int pg = base + lane;
      const uint32_t key = pg < hi ? keys[pg] : 0xffffffffu;
      const unsigned eq = __ballot_sync(0xffffffffu, pg < hi && key == thr);
      const bool take = pg < hi && (key < thr || (key == thr && eq_before + __popc(eq & below) < kk));
      const unsigned tk = __ballot_sync(0xffffffffu, take);
      if (take) out[pos + __popc(tk & below)] = pg;
      pos += __popc(tk);
      eq_before += __popc(eq);
    }
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

cudaError_t LaunchEntmaxCriticality(const EntmaxCriticalityParams& p, cudaStream_t stream) {
  if (EntmaxCriticalityValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.kv.batch == 0) return cudaSuccess;
  if (p.kv.batch > 65535 || p.select_heads > 65535) return cudaErrorInvalidValue;
  const int per_list = p.query.num_heads / p.select_heads;
  const size_t smem = static_cast<size_t>(per_list) * p.kv.head_dim * sizeof(float);
  const dim3 grid((p.kv.max_blocks_per_seq + entmax_detail::kCritPagesPerCta - 1) / entmax_detail::kCritPagesPerCta,
                  p.select_heads, p.kv.batch);
  if (per_list <= 8) {
    const dim3 vgrid((p.kv.max_blocks_per_seq + entmax_detail::kVecPagesPerCta - 1) / entmax_detail::kVecPagesPerCta,
                     p.select_heads, p.kv.batch);
    return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
      if (per_list <= 1) entmax_detail::CriticalityVecKernel<T, D, 1><<<vgrid, entmax_detail::kCritThreads, 0, stream>>>(p);
      else if (per_list <= 2) entmax_detail::CriticalityVecKernel<T, D, 2><<<vgrid, entmax_detail::kCritThreads, 0, stream>>>(p);
      else if (per_list <= 4) entmax_detail::CriticalityVecKernel<T, D, 4><<<vgrid, entmax_detail::kCritThreads, 0, stream>>>(p);
      else entmax_detail::CriticalityVecKernel<T, D, 8><<<vgrid, entmax_detail::kCritThreads, 0, stream>>>(p);
      return cudaGetLastError();
    });
  }
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    entmax_detail::CriticalityKernel<T, D><<<grid, entmax_detail::kCritThreads, smem, stream>>>(p);
    return cudaGetLastError();
  });
}

cudaError_t LaunchEntmaxTopkPack(const EntmaxTopkPackParams& p, cudaStream_t stream) {
  if (EntmaxTopkPackValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  if (p.batch > 65535) return cudaErrorInvalidValue;
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
