// K2 page_criticality on the GPU (entmax_topk.h).
//
// CriticalityKernel: a warp per page; each lane holds D/32 dims of the page's
// kmin/kmax and of the group's queries (fp32 in shared memory), one warp
// reduction per query head; the group max is taken in registers.
// CriticalityVecKernel (H/Hs <= 8): a group of D*sizeof(T)/16 lanes per page
// row, 16-byte loads of kmin and kmax, 64 pages per CTA all in flight (2-8
// per group: bf16 D=128 gives 8 groups of 16 lanes, 8 pages each), the list's
// queries in registers; one row load serves every head of the list.
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/entmax_kv/entmax_dispatch.cuh"
#include "kernels/entmax_kv/entmax_topk.h"

namespace kvstream::entmax_detail {
namespace {

constexpr int kCritThreads = 128;
constexpr int kCritPagesPerCta = 16;

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
  // PDL launch: the CTAs are placed while the previous kernel drains; nothing
  // is read before the wait (q, block table or stats may be that kernel's).
  GridDepWait();
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

// ---- K2 per page, all KV heads (issue 9) ------------------------------------
// SHARED_KV (Hs == Hkv): list g is KV head g, so a page's rows of every list
// are the Hkv adjacent rows (page, 0..Hkv-1) of kmin and of kmax: one CTA
// reads them together (bf16 D=128, Hkv=8: 2 KB contiguous per kind, instead of
// a 256-byte row per CTA of a per-list grid), and the page id is loaded once
// for all lists. Persistent CTAs (about two per SM) walk chunks of kRows
// (page, head) rows; the next chunk's page ids are loaded beside the current
// chunk's stats, so after the first chunk every chunk costs one round trip and
// the grid is one wave (the per-list kernel ran two waves of CTAs that each
// started with two dependent loads). Thread t keeps head g = (t / kLanes) % Hkv
// for every chunk: its queries stay in registers.
constexpr int kPageThreads = 256;
constexpr int kPageCtasPerSm = 2;  // __launch_bounds__: <= 128 registers per thread

template <class T, int D, int NH>
struct PageGeo {
  static constexpr int kVec = 16 / sizeof(T), kLanes = D / kVec, kGroups = kPageThreads / kLanes;
  // Rows per thread, all loads in flight: 8 (16 uint4) beside the queries of
  // up to 4 heads; 4 with 8 heads (8 rows spilled ~0.5 KB at 128 registers).
  static constexpr int kRowsPerThread = NH <= 4 ? 8 : 4;
  static constexpr int kRows = kGroups * kRowsPerThread;  // (page, head) rows per chunk
  static_assert(kLanes <= 32 && 32 % kLanes == 0, "a row is a power-of-two lane group within a warp");
  static_assert(kRows <= kPageThreads, "one page id per thread (chunk pages = kRows / Hkv)");
};

template <class T, int D, int NH>
__global__ void __launch_bounds__(kPageThreads, kPageCtasPerSm) CriticalityPageKernel(const EntmaxCriticalityParams p) {
  using Geo = PageGeo<T, D, NH>;
  constexpr int kVec = Geo::kVec, kLanes = Geo::kLanes, kGroups = Geo::kGroups, kRpt = Geo::kRowsPerThread;
  __shared__ int32_t ids[Geo::kRows];  // page ids of the current chunk
  GridDepWait();                       // PDL launch: nothing is read before it
  const EntmaxPagedKv& kv = p.kv;
  const int b = blockIdx.y, Hkv = kv.num_kv_heads, H = p.query.num_heads, nh = H / Hkv, MB = kv.max_blocks_per_seq;
  const int tid = threadIdx.x, sub = tid % kLanes, grp = tid / kLanes, g = grp % Hkv;
  const int chunk_pages = Geo::kRows / Hkv, pages_per_pass = kGroups / Hkv, pg0 = grp / Hkv;
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const T* q = static_cast<const T*>(p.query.q) + b * qsb + static_cast<int64_t>(g) * nh * qsh + sub * kVec;
  float qr[NH][kVec];
#pragma unroll
  for (int i = 0; i < NH; ++i) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) qr[i][e] = i < nh ? ToF(q[i * qsh + e]) : 0.0f;
  }
  const int32_t* table = kv.block_table + static_cast<int64_t>(b) * MB;
  const int hist = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB).hist;
  const int chunks = (hist + chunk_pages - 1) / chunk_pages;
  int c = blockIdx.x;
  if (c >= chunks) return;
  // Page id of chunk cc for thread i < chunk_pages (0 past the history: loaded, never written back).
  auto id_of = [&](int cc, int i) { return i < chunk_pages && cc * chunk_pages + i < hist ? table[cc * chunk_pages + i] : 0; };
  if (tid < chunk_pages) ids[tid] = id_of(c, tid);
  __syncthreads();
  const uint4* kmin = static_cast<const uint4*>(p.stats.kmin);
  const uint4* kmax = static_cast<const uint4*>(p.stats.kmax);
  float* urow = p.u + (static_cast<int64_t>(b) * Hkv + g) * MB;
  for (; c < chunks; c += gridDim.x) {
    const int first = c * chunk_pages;
    uint4 lo[kRpt], hi[kRpt];
#pragma unroll
    for (int j = 0; j < kRpt; ++j) {
      const int pl = min(pg0 + pages_per_pass * j, hist - 1 - first);  // past the end: reload the last page
      const int64_t row = (static_cast<int64_t>(ids[pl]) * Hkv + g) * kLanes + sub;
      lo[j] = kmin[row], hi[j] = kmax[row];
    }
    // The next chunk's ids, in flight with the stats above (stored after use).
    const int cn = c + gridDim.x;
    const int32_t nid = cn < chunks ? id_of(cn, tid) : 0;
#pragma unroll
    for (int j = 0; j < kRpt; ++j) {
      float mn[kVec], mx[kVec];
      Vec16<T>::Load(lo[j], mn);
      Vec16<T>::Load(hi[j], mx);
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
      const int pg = first + pg0 + pages_per_pass * j;
      if (sub == 0 && pg < hist) urow[pg] = best;
    }
    __syncthreads();  // every thread is done with this chunk's ids
    if (tid < chunk_pages) ids[tid] = nid;
    __syncthreads();
  }
}

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
  if (p.select_heads == p.kv.num_kv_heads && per_list <= 8) {
    int dev = 0, sms = 0;
    KV_CUDA_CHECK(cudaGetDevice(&dev));
    KV_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const cudaError_t e = entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
      using Geo = entmax_detail::PageGeo<T, D, 1>;  // kGroups does not depend on NH
      if (Geo::kGroups % p.kv.num_kv_heads != 0) return cudaErrorNotSupported;  // per-list kernel below
      // One wave: about kPageCtasPerSm CTAs per SM over the batch, at most one per chunk.
      const int rows = per_list <= 4 ? Geo::kRows : entmax_detail::PageGeo<T, D, 8>::kRows;
      const int chunk_pages = rows / p.kv.num_kv_heads;
      const int chunks = (p.kv.max_blocks_per_seq + chunk_pages - 1) / chunk_pages;
      int per_seq = std::max(1, entmax_detail::kPageCtasPerSm * sms / p.kv.batch);
      if (p.max_ctas_per_seq > 0) per_seq = std::min(per_seq, p.max_ctas_per_seq);
      const dim3 grid(std::max(1, std::min(chunks, per_seq)), p.kv.batch);
      using entmax_detail::CriticalityPageKernel;
      auto kernel = per_list <= 1   ? CriticalityPageKernel<T, D, 1>
                    : per_list <= 2 ? CriticalityPageKernel<T, D, 2>
                    : per_list <= 4 ? CriticalityPageKernel<T, D, 4>
                                    : CriticalityPageKernel<T, D, 8>;
      return entmax_detail::LaunchPdl(kernel, grid, dim3(entmax_detail::kPageThreads), 0, stream, p);
    });
    if (e != cudaErrorNotSupported) return e;
  }
  if (per_list <= 8) {
    const dim3 vgrid((p.kv.max_blocks_per_seq + entmax_detail::kVecPagesPerCta - 1) / entmax_detail::kVecPagesPerCta,
                     p.select_heads, p.kv.batch);
    return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
      using entmax_detail::CriticalityVecKernel;
      auto kernel = per_list <= 1   ? CriticalityVecKernel<T, D, 1>
                    : per_list <= 2 ? CriticalityVecKernel<T, D, 2>
                    : per_list <= 4 ? CriticalityVecKernel<T, D, 4>
                                    : CriticalityVecKernel<T, D, 8>;
      return entmax_detail::LaunchPdl(kernel, vgrid, dim3(entmax_detail::kCritThreads), 0, stream, p);
    });
  }
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    entmax_detail::CriticalityKernel<T, D><<<grid, entmax_detail::kCritThreads, smem, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace kvstream
