// K1 page_stats on the GPU (entmax_page_stats.h): one CTA per (touched page,
// KV head, sequence), one thread per dim walking the page's present tokens,
// so each load of a token row is coalesced. Explicit _rn arithmetic keeps the
// sums in the twin's order and rounding (no FMA contraction).
#include <cuda_runtime.h>

#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/entmax_kv/entmax_dispatch.cuh"
#include "kernels/entmax_kv/entmax_page_stats.h"

namespace kvstream::entmax_detail {
namespace {

template <class T, int D>
__global__ void __launch_bounds__(D) PageStatsKernel(const EntmaxPageStatsParams p) {
  const EntmaxPagedKv& kv = p.kv;
  const int b = blockIdx.z, g = blockIdx.y, d = threadIdx.x, P = kv.page_size;
  const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], P, kv.max_blocks_per_seq);
  const int pg = s.pages - p.recent_pages + static_cast<int>(blockIdx.x);
  if (pg < 0 || pg >= s.pages) return;
  const int n = min(P, s.tokens - pg * P);
  const int64_t so = (EntmaxStatsSlot(kv, b, pg) * kv.num_kv_heads + g) * D + d;
  // Row j of the page: one block holds the whole page unless P > Pb.
  const T* pool = static_cast<const T*>(kv.k_pool) + d;
  const bool one_block = EntmaxBlockTokens(kv) >= P;
  // Pages that are blocks (the default) index the table by page: no token arithmetic.
  const int64_t base = EntmaxBlockTokens(kv) == P
                           ? (static_cast<int64_t>(EntmaxPageBlock(kv, b, pg)) * kv.num_kv_heads + g) * P * D
                           : EntmaxTokenOffset(kv, b, g, pg * P);
  auto key = [&](int j) {
    return pool[one_block ? base + static_cast<int64_t>(j) * D : EntmaxTokenOffset(kv, b, g, pg * P + j)];
  };
  if (p.kind == EntmaxStatKind::kMinMax) {
    T lo = key(0), hi = lo;
    for (int j = 1; j < n; ++j) {
      const T x = key(j);
      if (ToF(x) < ToF(lo)) lo = x;
      if (ToF(x) > ToF(hi)) hi = x;
    }
    static_cast<T*>(p.stats.kmin)[so] = lo;
    static_cast<T*>(p.stats.kmax)[so] = hi;
  } else {
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) sum = __fadd_rn(sum, ToF(key(j)));
    const float mean = __fdiv_rn(sum, static_cast<float>(n));
    float ss = 0.0f;
    for (int j = 0; j < n; ++j) {
      const float c = __fsub_rn(ToF(key(j)), mean);
      ss = __fadd_rn(ss, __fmul_rn(c, c));
    }
    p.stats.kmean[so] = mean;
    p.stats.kstd[so] = fmaxf(__fsqrt_rn(__fdiv_rn(ss, static_cast<float>(n))), kEntmaxStdFloor);
  }
}

}  // namespace
}  // namespace kvstream::entmax_detail

namespace kvstream {

cudaError_t LaunchEntmaxPageStats(const EntmaxPageStatsParams& p, cudaStream_t stream) {
  if (EntmaxPageStatsValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.kv.batch == 0) return cudaSuccess;
  const int pages = p.recent_pages < p.kv.max_blocks_per_seq ? p.recent_pages : p.kv.max_blocks_per_seq;
  if (p.kv.batch > 65535 || p.kv.num_kv_heads > 65535) return cudaErrorInvalidValue;
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    // A page past N - recent_pages..N is skipped in the kernel; clamping the
    // grid to MB keeps "recompute all" cheap to express.
    EntmaxPageStatsParams q = p;
    q.recent_pages = pages;
    entmax_detail::PageStatsKernel<T, D><<<dim3(pages, p.kv.num_kv_heads, p.kv.batch), D, 0, stream>>>(q);
    return cudaGetLastError();
  });
}

}  // namespace kvstream
