// K7 sparse_decode on the GPU (entmax_sparse_decode.h): four small kernels.
//   ScoreKernel  (S, H, B): a warp per selected token, lanes split D; writes z_j
//                to the fp32 scratch (the selected K is read once, §3).
//   TauKernel    (H, B): one CTA per head over its scratch row: max, histogram,
//                tau refinement (entmax_math.h, fp32), mass and support.
//   ValueKernel  (S, H, B): warps stride the split's tokens, lanes own D/32
//                dims; p_j from the scratch, V rows read only where p_j > 0.
//   MergeKernel  (H, B): sums the S partial outputs and normalises (S > 1).
// alpha = 1 with at most 8 heads per list goes to the streaming fast path
// (entmax_softmax_decode.cu); these kernels serve alpha > 1 and wider lists.
#include <cuda_runtime.h>

#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/entmax_kv/entmax_dispatch.cuh"
#include "kernels/entmax_kv/entmax_math.h"
#include "kernels/entmax_kv/entmax_sparse_decode.h"

namespace kvstream::entmax_detail {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kTauThreads = 256;

struct Row {
  int64_t sel_row;  // b*Hs + l
  int64_t bh;       // b*H + h
  int n;            // T_sel
};

__device__ __forceinline__ Row RowOf(const EntmaxSparseDecodeParams& p, int b, int h) {
  Row r;
  const int per_list = p.query.num_heads / p.sel.select_heads;
  r.sel_row = static_cast<int64_t>(b) * p.sel.select_heads + h / per_list;
  r.bh = static_cast<int64_t>(b) * p.query.num_heads + h;
  const int64_t cap = min(static_cast<int64_t>(p.max_sel_tokens),
                          static_cast<int64_t>(max(p.sel.page_count[r.sel_row], 0)) * p.kv.page_size);
  r.n = static_cast<int>(min(max(static_cast<int64_t>(p.sel.sel_len[r.sel_row]), int64_t{0}), cap));
  return r;
}

// Element offset of (selected token j, dim 0) of KV head g in a pool.
__device__ __forceinline__ int64_t TokenOffset(const EntmaxSparseDecodeParams& p, int b, const Row& r, int g, int j) {
  const int P = p.kv.page_size, MB = p.kv.max_blocks_per_seq;
  return EntmaxTokenOffset(p.kv, b, g, p.sel.pages[r.sel_row * MB + j / P] * P + j % P);
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) ScoreKernel(const EntmaxSparseDecodeParams p) {
  constexpr int kE = D / 32;  // contiguous dims per lane
  const int b = blockIdx.z, h = blockIdx.y, H = p.query.num_heads;
  const Row r = RowOf(p, b, h);
  int begin, end;
  EntmaxSplitRange(r.n, p.num_splits, blockIdx.x, &begin, &end);
  if (begin >= end) return;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = h / (H / p.kv.num_kv_heads);
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const T* q = static_cast<const T*>(p.query.q) + b * qsb + h * qsh + lane * kE;
  float qr[kE];
#pragma unroll
  for (int e = 0; e < kE; ++e) qr[e] = ToF(q[e]);
  const float zs = (p.alpha == 1.0f ? 1.0f : p.alpha - 1.0f) * p.scale;
  const T* kpool = static_cast<const T*>(p.kv.k_pool);
  float* z = p.scores + r.bh * p.max_sel_tokens;
  for (int j = begin + warp; j < end; j += kWarps) {
    const T* k = kpool + TokenOffset(p, b, r, g, j) + lane * kE;
    float dot = 0.0f;
#pragma unroll
    for (int e = 0; e < kE; ++e) dot = fmaf(qr[e], ToF(k[e]), dot);
    dot = WarpSum(dot);
    if (lane == 0) z[j] = zs * dot;
  }
}

struct TauShared {
  float red[32];
  int counts[kEntmaxHistBins];
  float tau;
};

// Sum over the row of the moments at tau (every thread gets them).
__device__ EntmaxMoments<float> RowMoments(const float* z, int n, float tau, float alpha, TauShared* sh) {
  EntmaxMoments<float> mo;
  for (int j = threadIdx.x; j < n; j += blockDim.x) mo.Add(z[j], tau, alpha);
  mo.a0 = BlockReduce<false>(mo.a0, sh->red);
  mo.a1 = BlockReduce<false>(mo.a1, sh->red);
  mo.a2 = BlockReduce<false>(mo.a2, sh->red);
  return mo;
}

__global__ void __launch_bounds__(kTauThreads) TauKernel(const EntmaxSparseDecodeParams p) {
  __shared__ TauShared sh;
  const int b = blockIdx.y, h = blockIdx.x;
  const Row r = RowOf(p, b, h);
  const float* z = p.scores + r.bh * p.max_sel_tokens;
  const float alpha = p.alpha;
  if (r.n == 0) {
    if (threadIdx.x == 0) {
      p.tau[r.bh] = 0.0f;
      p.mass[r.bh] = 0.0f;
      if (p.support) p.support[r.bh] = 0;
    }
    return;
  }
  float m = -INFINITY;
  for (int j = threadIdx.x; j < r.n; j += blockDim.x) m = fmaxf(m, z[j]);
  m = BlockReduce<true>(m, sh.red);
  float tau;
  if (alpha == 1.0f) {
    float se = 0.0f;
    for (int j = threadIdx.x; j < r.n; j += blockDim.x) se += expf(z[j] - m);
    tau = m + logf(BlockReduce<false>(se, sh.red));
  } else if (p.tau_mode == EntmaxTauMode::kFixed) {
    tau = p.tau_init[r.bh];
  } else if (p.tau_mode == EntmaxTauMode::kCorrected) {
    EntmaxHybridState<float> st;
    st.lo = m - 1.0f, st.hi = m;
    tau = EmClamp(p.tau_init[r.bh], st.lo, st.hi);
    for (int it = 0; it < p.correction_iters; ++it) {
      // Every thread holds the same moments, so all take the same branch.
      if (!EntmaxHybridStep(&tau, RowMoments(z, r.n, tau, alpha, &sh), alpha, &st)) break;
    }
  } else {
    if (threadIdx.x < kEntmaxHistBins) sh.counts[threadIdx.x] = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < r.n; j += blockDim.x) {
      const int bin = static_cast<int>(floorf(kEntmaxHistBins * (z[j] - m + 1.0f)));
      if (bin >= 0) atomicAdd(&sh.counts[min(bin, kEntmaxHistBins - 1)], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) sh.tau = EntmaxHistogramTau0<float>(sh.counts, m, alpha);
    __syncthreads();
    float lo = m - 1.0f, hi = m - EmPow(static_cast<float>(r.n), 1.0f - alpha);
    tau = EmClamp(sh.tau + 1.0f / 32, lo, hi);
    for (int it = 0; it < p.niter; ++it) tau = EntmaxExactStep(tau, RowMoments(z, r.n, tau, alpha, &sh), alpha, &lo, &hi);
  }
  float mass = 0.0f, support = 0.0f;
  for (int j = threadIdx.x; j < r.n; j += blockDim.x) {
    const float w = alpha == 1.0f ? expf(z[j] - tau) : EntmaxSparseWeight(z[j], tau, alpha);
    mass += w;
    support += w > 0.0f ? 1.0f : 0.0f;
  }
  mass = BlockReduce<false>(mass, sh.red);
  support = BlockReduce<false>(support, sh.red);
  if (threadIdx.x == 0) {
    p.tau[r.bh] = tau;
    p.mass[r.bh] = mass;
    if (p.support) p.support[r.bh] = static_cast<int32_t>(support);
  }
}

template <class T, int D>
__device__ void StoreOut(const EntmaxSparseDecodeParams& p, int b, int h, int d, float v, float mass) {
  const int64_t osb = p.out_stride_b ? p.out_stride_b : static_cast<int64_t>(p.query.num_heads) * D;
  const int64_t osh = p.out_stride_h ? p.out_stride_h : D;
  const float norm = p.normalize_output && mass > 0.0f ? 1.0f / mass : 1.0f;
  static_cast<T*>(p.out)[b * osb + h * osh + d] = FromF<T>(v * norm);
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) ValueKernel(const EntmaxSparseDecodeParams p) {
  constexpr int kE = D / 32;
  __shared__ float part[kWarps][D];
  const int b = blockIdx.z, h = blockIdx.y, H = p.query.num_heads;
  const Row r = RowOf(p, b, h);
  int begin, end;
  EntmaxSplitRange(r.n, p.num_splits, blockIdx.x, &begin, &end);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = h / (H / p.kv.num_kv_heads);
  const float* z = p.scores + r.bh * p.max_sel_tokens;
  const float tau = p.tau[r.bh], alpha = p.alpha;
  const T* vpool = static_cast<const T*>(p.kv.v_pool);
  float acc[kE] = {};
  for (int j = begin + warp; j < end; j += kWarps) {
    const float w = alpha == 1.0f ? expf(z[j] - tau) : EntmaxSparseWeight(z[j], tau, alpha);
    if (!(w > 0.0f)) continue;  // entmax zeros: V row never read
    const T* v = vpool + TokenOffset(p, b, r, g, j) + lane * kE;
#pragma unroll
    for (int e = 0; e < kE; ++e) acc[e] = fmaf(w, ToF(v[e]), acc[e]);
  }
#pragma unroll
  for (int e = 0; e < kE; ++e) part[warp][lane * kE + e] = acc[e];
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += part[w][d];
    if (p.num_splits == 1) {
      StoreOut<T, D>(p, b, h, d, s, p.mass[r.bh]);
    } else {
      p.partial_out[(r.bh * p.num_splits + blockIdx.x) * D + d] = s;
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(D) MergeKernel(const EntmaxSparseDecodeParams p) {
  const int b = blockIdx.y, h = blockIdx.x, d = threadIdx.x;
  const int64_t bh = static_cast<int64_t>(b) * p.query.num_heads + h;
  float s = 0.0f;
  for (int k = 0; k < p.num_splits; ++k) s += p.partial_out[(bh * p.num_splits + k) * D + d];
  StoreOut<T, D>(p, b, h, d, s, p.mass[bh]);
}

template <class T, int D>
cudaError_t LaunchTyped(const EntmaxSparseDecodeParams& p, cudaStream_t stream) {
  static_assert(D % 32 == 0 && D <= 1024, "lanes split D; merge uses D threads");
  const int B = p.kv.batch, H = p.query.num_heads, S = p.num_splits;
  ScoreKernel<T, D><<<dim3(S, H, B), kThreads, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  TauKernel<<<dim3(H, B), kTauThreads, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  ValueKernel<T, D><<<dim3(S, H, B), kThreads, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  if (S > 1) {
    MergeKernel<T, D><<<dim3(H, B), D, 0, stream>>>(p);
    KV_CUDA_CHECK(cudaGetLastError());
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace kvstream::entmax_detail

namespace kvstream {

cudaError_t LaunchEntmaxSparseDecode(const EntmaxSparseDecodeParams& p, cudaStream_t stream) {
  if (EntmaxSparseDecodeValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (EntmaxSoftmaxFastPath(p)) return LaunchEntmaxSoftmaxDecode(p, stream);  // alpha 1: one streaming pass
  if (p.kv.batch == 0) return cudaSuccess;
  if (p.kv.batch > 65535 || p.query.num_heads > 65535) return cudaErrorInvalidValue;  // grid y/z limits
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    return entmax_detail::LaunchTyped<T, D>(p, stream);
  });
}

}  // namespace kvstream
