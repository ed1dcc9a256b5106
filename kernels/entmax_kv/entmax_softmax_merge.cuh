// LSE merge of the alpha-1 fast path's split partials (entmax_softmax_decode.cu;
// entmax_sparse_decode.h "Fast path"): out = sum_s 2^(lse_s - lse) * partial_s,
// lse = log2 sum_s 2^lse_s, over the S splits of one query head. Used by the
// fused merge (the last split CTA of a page list) and by the separate merge
// kernel; one function so both give the same bits.
#pragma once

#include <cuda_runtime.h>

#include "kernels/common/device_math.cuh"
#include "kernels/entmax_kv/entmax_sparse_decode.h"

namespace kvstream::entmax_detail {

inline constexpr float kSoftmaxLn2 = 0.6931471805599453f;

// Merges dims [4*d4, 4*d4 + 4) of query head h of sequence b. lse, cnt: that
// head's S split statistics (log2-sum-exp, support), already in shared memory.
// Partials are read through L2 (__ldcg): in the fused merge they were written
// by other CTAs of the same grid, which L1 does not see. partial_out is 16-byte
// aligned (EntmaxSparseDecodeValidate; partial_lse 8-byte) and D % 4 == 0, so rows load as float4;
// 16 splits per unrolled step keep 256 B per thread in flight (the merge is a
// few L2 round trips, not S of them).
template <class T, int D>
__device__ __forceinline__ void MergeHead4(const EntmaxSparseDecodeParams& p, int b, int h, int d4, const float* lse,
                                           const float* cnt) {
  static_assert(D % 4 == 0, "float4 partial rows");
  const int S = p.num_splits, H = p.query.num_heads;
  const int64_t bh = static_cast<int64_t>(b) * H + h;
  const float4* po = reinterpret_cast<const float4*>(p.partial_out + bh * S * D) + d4;
  float m = -INFINITY;
  for (int s = 0; s < S; ++s) m = fmaxf(m, lse[s]);
  float tot = 0.0f, support = 0.0f;
  float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (m != -INFINITY) {
#pragma unroll 16
    for (int s = 0; s < S; ++s) {
      const float w = exp2f(lse[s] - m);  // 0 for empty splits (-inf)
      const float4 v = __ldcg(po + static_cast<int64_t>(s) * (D / 4));
      tot += w;
      acc.x = fmaf(w, v.x, acc.x), acc.y = fmaf(w, v.y, acc.y);
      acc.z = fmaf(w, v.z, acc.z), acc.w = fmaf(w, v.w, acc.w);
      support += cnt[s];
    }
  }
  const int64_t osb = p.out_stride_b ? p.out_stride_b : static_cast<int64_t>(H) * D;
  const int64_t osh = p.out_stride_h ? p.out_stride_h : D;
  T* out = static_cast<T*>(p.out) + b * osb + h * osh + 4 * d4;
  const bool any = tot > 0.0f;
  out[0] = FromF<T>(any ? acc.x / tot : 0.0f), out[1] = FromF<T>(any ? acc.y / tot : 0.0f);
  out[2] = FromF<T>(any ? acc.z / tot : 0.0f), out[3] = FromF<T>(any ? acc.w / tot : 0.0f);
  if (d4 == 0) {
    p.tau[bh] = tot > 0.0f ? (m + log2f(tot)) * kSoftmaxLn2 : 0.0f;
    p.mass[bh] = tot > 0.0f ? 1.0f : 0.0f;
    if (p.support) p.support[bh] = static_cast<int32_t>(support);
  }
}

// Loads the split statistics of query heads [h0, h0 + nh) of sequence b into
// lse[i*S + s], cnt[i*S + s] (block-strided, one parallel L2 round trip; no
// barrier here).
__device__ __forceinline__ void LoadSplitStats(const EntmaxSparseDecodeParams& p, int b, int h0, int nh, float* lse,
                                               float* cnt) {
  const int S = p.num_splits;
  const int64_t bh0 = static_cast<int64_t>(b) * p.query.num_heads + h0;
  const float2* pl = reinterpret_cast<const float2*>(p.partial_lse) + bh0 * S;
  for (int j = threadIdx.x; j < nh * S; j += blockDim.x) {
    const float2 v = __ldcg(pl + j);  // (bh0 + i)*S + s == bh0*S + j with j = i*S + s
    lse[j] = v.x, cnt[j] = v.y;
  }
}

}  // namespace kvstream::entmax_detail
