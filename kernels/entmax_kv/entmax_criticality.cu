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
    const int64_t slot = EntmaxStatsSlot(kv, b, pg);
    float best = 0.0f;
    for (int i = 0; i < per_list; ++i) {
      const int64_t st = (slot * kv.num_kv_heads + (l * per_list + i) / group) * D;
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

// NH <= 4 with 256-byte rows (bf16 D = 128, the Llama shape): at most 64
// registers (other shapes spill under the cap), so 8 CTAs fit an SM and a 1024-CTA grid
// (1 x 128K: 128 page blocks x 8 lists) is one wave (was 80 registers: 6 per SM,
// 1.3 waves, the last 0.3 wave streaming on ~2 CTAs per SM).
// kPageIsBlock: pages are the pool's blocks (the default), so a page's stats
// slot is its table entry; the general EntmaxStatsSlot cost K2 ~1% (A/B, H100).
template <class T, int D, int NH, bool kPageIsBlock>
__global__ void __launch_bounds__(kCritThreads, NH <= 4 && D * sizeof(T) == 256 ? 8 : 1) CriticalityVecKernel(const EntmaxCriticalityParams p) {
  constexpr int kVec = 16 / sizeof(T), kLanes = D / kVec, kGroups = kCritThreads / kLanes;
  static_assert(kLanes <= 32 && 32 % kLanes == 0, "a page row is a power-of-two lane group within a warp");
  const EntmaxPagedKv& kv = p.kv;
  const int b = blockIdx.z, l = blockIdx.y, H = p.query.num_heads;
  const int nh = H / p.select_heads, g = l * nh / (H / kv.num_kv_heads);
  const int tid = threadIdx.x, sub = tid % kLanes, grp = tid / kLanes;
  const int MB = kv.max_blocks_per_seq;
  const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
  const int first = blockIdx.x * kVecPagesPerCta, end = min(s.hist, first + kVecPagesPerCta);
  // The CTA's page ids first (one coalesced load, issued beside the seq_lens
  // load: any entry < MB is readable, and entries past the sequence are never
  // dereferenced), so the stats loads below are one round trip, not two.
  __shared__ int64_t rows[kVecPagesPerCta];  // uint4 index of (page, g, lane 0)
  if (tid < kVecPagesPerCta && first + tid < MB) {
    const int64_t slot = kPageIsBlock ? EntmaxPageBlock(kv, b, first + tid) : EntmaxStatsSlot(kv, b, first + tid);
    rows[tid] = (slot * kv.num_kv_heads + g) * kLanes;
  }
  __syncthreads();
  if (first >= end) return;  // (reads nothing the kernel before writes, writes nothing)
  const uint4* kmin = static_cast<const uint4*>(p.stats.kmin);
  const uint4* kmax = static_cast<const uint4*>(p.stats.kmax);
  float* urow = p.u + (static_cast<int64_t>(b) * p.select_heads + l) * MB;
  // Each group owns kPer consecutive pages of the CTA, all loads issued first.
  constexpr int kPer = kVecPagesPerCta / kGroups;
  static_assert(kVecPagesPerCta % kGroups == 0, "pages split evenly over the groups");
  // Pages (2 uint4 each) in registers per batch: 4 under the 64-register cap
  // (NH <= 4: 8 CTAs x 128 threads x 128 B = 128 KB in flight per SM), else 8.
  constexpr int kMaxBatch = NH <= 4 ? 4 : 8;
  constexpr int kBatch = kPer < kMaxBatch ? kPer : kMaxBatch;
  // PDL: seq_lens and the page ids (host uploads) are read before the wait,
  // so the launch and that round trip overlap the kernel before; everything
  // else after it. (Prefetching the CTA's stats rows into L2 here as well
  // measured slower on the H100: K2 +1.7 us at (1, 128K), +6 us at (1, 512K),
  // bench/results/gpu/entmax_kv_decode_ab_s12_h100.json.)
  PdlWaitForPrerequisite();
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const T* q = static_cast<const T*>(p.query.q) + b * qsb + static_cast<int64_t>(l) * nh * qsh + sub * kVec;
  // The list's queries stay packed in their own dtype (exact: they are dtype
  // values), unpacked per use: 4 registers per head instead of 8 (bf16), so
  // NH = 4 fits the 64-register cap without spilling.
  uint4 qv[NH];
#pragma unroll
  for (int i = 0; i < NH; ++i) {
    float qf[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) qf[e] = i < nh ? ToF(q[i * qsh + e]) : 0.0f;
    qv[i] = Vec16<T>::Store(qf);
  }
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
        float qf[kVec];
        Vec16<T>::Load(qv[i], qf);
#pragma unroll
        for (int e = 0; e < kVec; ++e) u = fmaf(qf[e], qf[e] >= 0.0f ? mx[e] : mn[e], u);
#pragma unroll
        for (int o = kLanes / 2; o > 0; o >>= 1) u += __shfl_xor_sync(0xffffffffu, u, o);
        if (i < nh) best = i == 0 ? u : fmaxf(best, u);
      }
      const int pg = first + grp * kPer + k0 + k;
      if (sub == 0 && pg < end) urow[pg] = best;
    }
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
  if (per_list <= 8) {
    const dim3 vgrid((p.kv.max_blocks_per_seq + entmax_detail::kVecPagesPerCta - 1) / entmax_detail::kVecPagesPerCta,
                     p.select_heads, p.kv.batch);
    // A programmatic dependent of the kernel before (see the kernel's wait).
    return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
      using entmax_detail::CriticalityVecKernel, entmax_detail::LaunchPdl, entmax_detail::kCritThreads;
      const bool blocks = EntmaxBlockTokens(p.kv) == p.kv.page_size;
      auto launch = [&]<int NH>() {
        return LaunchPdl(blocks ? CriticalityVecKernel<T, D, NH, true> : CriticalityVecKernel<T, D, NH, false>, vgrid,
                         dim3(kCritThreads), 0, stream, p);
      };
      if (per_list <= 1) return launch.template operator()<1>();
      if (per_list <= 2) return launch.template operator()<2>();
      if (per_list <= 4) return launch.template operator()<4>();
      return launch.template operator()<8>();
    });
  }
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    entmax_detail::CriticalityKernel<T, D><<<grid, entmax_detail::kCritThreads, smem, stream>>>(p);
    return cudaGetLastError();
  });
}

}  // namespace kvstream
