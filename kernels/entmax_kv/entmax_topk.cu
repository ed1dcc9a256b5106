// K2 page_criticality and K3 topk_pack on the GPU (entmax_topk.h).
//
// K2: a warp per page; each lane holds D/32 dims of the page's kmin/kmax and
// of the group's queries (fp32 in shared memory), one warp reduction per
// query head; the group max is taken in registers.
// K3: one CTA per (sequence, selection head). Instead of sorting up to P_hist
// pages, the (n - sinks)-th smallest EntmaxPageRankKey is found by radix
// selection and every page whose key is <= it is emitted in page order: the
// set the twin's stable sort picks, since keys are unique. The block helpers
// are AKV's (kernels/akv/akv_device.cuh; generic, reused rather than copied).
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
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    entmax_detail::CriticalityKernel<T, D><<<grid, entmax_detail::kCritThreads, smem, stream>>>(p);
    return cudaGetLastError();
  });
}

cudaError_t LaunchEntmaxTopkPack(const EntmaxTopkPackParams& p, cudaStream_t stream) {
  if (EntmaxTopkPackValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  if (p.batch > 65535) return cudaErrorInvalidValue;
  entmax_detail::TopkPackKernel<<<dim3(p.sel.select_heads, p.batch), entmax_detail::kPackThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
