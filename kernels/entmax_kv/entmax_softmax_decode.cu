// K7 fast path for alpha = 1 (entmax_sparse_decode.h "Fast path"; spec §3:
// the selected K/V is read once, §4 step 5 with tau = log-sum-exp, §7 K7).
//
// Why a separate kernel: alpha = 1 needs no global tau search, so the score,
// tau and value passes fuse into one online softmax and the selected pages
// can be streamed like the dense decode (kernels/dense), instead of one token
// per warp with a page lookup per token. Per CTA (split, page list l, b):
//   1. the physical offsets of the split's listed pages go to shared memory
//      once (a segment of up to kTabPages pages at a time);
//   2. 32-token stages of K and V rows are copied with 16-byte cp.async, two
//      stages in flight (the next one is issued before the current is used);
//   3. scores: a warp per token, lanes split D, q of all NH heads of the list
//      in registers (pre-scaled by scale*log2(e): exp2 domain), so every K
//      row serves the NH heads;
//   4. online softmax per head (a warp per head over the stage's 32 scores);
//   5. values: a warp per token, lanes own D/32 dims of the NH accumulators.
// Split-K partials are normalised per split with their log2-sum-exp; the
// merge weighs them by 2^(lse_s - lse).
#include <cuda_runtime.h>

#include "kernels/common/cp_async.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/entmax_kv/entmax_dispatch.cuh"
#include "kernels/entmax_kv/entmax_sparse_decode.h"

namespace kvstream::entmax_detail {
namespace {

constexpr int kSmWarps = 4;
constexpr int kSmThreads = kSmWarps * 32;
constexpr int kStageTokens = 32;  // == warp size: step 4 gives one score per lane
constexpr int kTabPages = 256;    // page offsets staged per segment
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <class T, int D>
struct SmGeo {
  static constexpr int kVec = 16 / sizeof(T);        // elements per 16-byte piece
  static constexpr int kPieces = D / kVec;           // pieces per row
  static constexpr int kE = D / 32;                  // dims per lane in steps 3 and 5
  static constexpr int kStageElems = 2 * kStageTokens * D;  // K rows then V rows
  static constexpr int kSmemBytes = 2 * kStageElems * static_cast<int>(sizeof(T));
};

// kE contiguous elements at src (aligned to kE*sizeof(T) bytes) to fp32.
template <class T, int kE>
__device__ __forceinline__ void LoadLane(const T* src, float* f) {
  if constexpr (sizeof(T) == 2 && kE == 4) {
    const uint2 w = *reinterpret_cast<const uint2*>(src);
    f[0] = __uint_as_float(w.x << 16), f[1] = __uint_as_float(w.x & 0xffff0000u);
    f[2] = __uint_as_float(w.y << 16), f[3] = __uint_as_float(w.y & 0xffff0000u);
  } else if constexpr (sizeof(T) == 2 && kE == 2) {
    const uint32_t w = *reinterpret_cast<const uint32_t*>(src);
    f[0] = __uint_as_float(w << 16), f[1] = __uint_as_float(w & 0xffff0000u);
  } else if constexpr (sizeof(T) == 4 && kE == 4) {
    const float4 w = *reinterpret_cast<const float4*>(src);
    f[0] = w.x, f[1] = w.y, f[2] = w.z, f[3] = w.w;
  } else {
#pragma unroll
    for (int e = 0; e < kE; ++e) f[e] = ToF(src[e]);
  }
}

// Warp sums of NV (a power of two <= 32) values per lane with NV-1 + 5-log2(NV)
// shuffles instead of 5*NV: each round halves the values a lane carries (the
// upper half of the lanes keeps the upper half of the values). Lane L ends with
// the total of value L >> (5 - log2 NV).
template <int NV>
__device__ __forceinline__ float WarpMultiSum(float (&v)[NV]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int n = NV, o = 16; n > 1; n >>= 1, o >>= 1) {
    const bool up = (lane & o) != 0;
#pragma unroll
    for (int j = 0; j < n / 2; ++j) {
      const float send = up ? v[j] : v[j + n / 2], keep = up ? v[j + n / 2] : v[j];
      v[j] = keep + __shfl_xor_sync(0xffffffffu, send, o);
    }
  }
  float r = v[0];
#pragma unroll
  for (int o = 16 / NV; o > 0; o >>= 1) r += __shfl_xor_sync(0xffffffffu, r, o);
  return r;
}

// kPageIsBlock: pages are the pool's blocks (P == Pb, the default), so a unit
// is a page and the table is indexed by page: the general addressing costs
// the B = 1 step ~3% on the H100 (A/B, session 15), so it is compiled apart.
template <class T, int D, int NH, bool kPageIsBlock>
__global__ void __launch_bounds__(kSmThreads) SoftmaxKernel(const EntmaxSparseDecodeParams p) {
  using Geo = SmGeo<T, D>;
  constexpr int kE = Geo::kE;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* stage = reinterpret_cast<T*>(smem_raw);
  __shared__ float sc[NH][kStageTokens];  // scores (exp2 domain), then weights
  __shared__ float run_m[NH], run_l[NH], corr[NH];
  __shared__ int run_n[NH];
  // Element offset of (unit, g, 0) in a pool: a unit is U = min(P, Pb)
  // selected tokens that sit in consecutive rows of one block.
  __shared__ int64_t tab[kTabPages];

  const EntmaxPagedKv& kv = p.kv;
  const int b = blockIdx.z, l = blockIdx.y, split = blockIdx.x, S = p.num_splits;
  const int H = p.query.num_heads, Hs = p.sel.select_heads, nh = H / Hs;
  const int h0 = l * nh, g = h0 / (H / kv.num_kv_heads);
  const int P = kv.page_size, pshift = __ffs(P) - 1, MB = kv.max_blocks_per_seq;
  const int Pb = kPageIsBlock ? P : EntmaxBlockTokens(kv), bshift = kPageIsBlock ? pshift : __ffs(Pb) - 1;
  const int ushift = kPageIsBlock ? pshift : min(pshift, bshift), U = kPageIsBlock ? P : 1 << ushift;
  const int upshift = pshift - ushift;  // units per page: 1 << upshift
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t sel_row = static_cast<int64_t>(b) * Hs + l;
  // q of the list's heads, lane's dims, pre-scaled into the exp2 domain (q is
  // older than the previous kernel: read before the PDL wait).
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const T* qb = static_cast<const T*>(p.query.q) + b * qsb;
  const float qscale = p.scale * kLog2e;
  float qr[NH][kE], acc[NH][kE];
#pragma unroll
  for (int i = 0; i < NH; ++i) {
#pragma unroll
    for (int e = 0; e < kE; ++e) {
      qr[i][e] = i < nh ? qscale * ToF(qb[(h0 + i) * qsh + lane * kE + e]) : 0.0f;
      acc[i][e] = 0.0f;
    }
  }
  const int32_t* list = p.sel.pages + sel_row * MB;
  PdlWaitForPrerequisite();  // K3's lists
  // The host sizes max_sel_tokens by the step's T_sel, which is every list's
  // length at B = 1 past min_context: the list entries of that split range
  // are loaded beside sel_len (one round trip less before the K/V copies)
  // and used when the list is that long (else reloaded below).
  int spec_begin, spec_end, spec_page = -1;
  EntmaxSplitRange(p.max_sel_tokens, S, split, &spec_begin, &spec_end);
  const int spec_u0 = spec_begin >> ushift;
  if (spec_begin < spec_end && tid < kTabPages && spec_u0 + tid <= ((spec_end - 1) >> ushift) &&
      ((spec_u0 + tid) >> upshift) < MB) {
    spec_page = list[(spec_u0 + tid) >> upshift];
  }
  int n;
  {
    const int64_t cap = min(static_cast<int64_t>(p.max_sel_tokens),
                            static_cast<int64_t>(max(p.sel.page_count[sel_row], 0)) * P);
    n = static_cast<int>(min(max(static_cast<int64_t>(p.sel.sel_len[sel_row]), int64_t{0}), cap));
  }
  int begin, end;
  EntmaxSplitRange(n, S, split, &begin, &end);
  const bool spec_ok = n == p.max_sel_tokens;  // then begin, end == spec_begin, spec_end

  if (tid < NH) run_m[tid] = -INFINITY, run_l[tid] = 0.0f, run_n[tid] = 0;

  const T* kpool = static_cast<const T*>(kv.k_pool);
  const T* vpool = static_cast<const T*>(kv.v_pool);
  const int32_t* table = kv.block_table + static_cast<int64_t>(b) * EntmaxTableRow(kv);

  for (int seg = begin; seg < end;) {
    const int e0 = seg >> ushift;  // units [e0, e1) of this segment
    const int e1 = min(((end - 1) >> ushift) + 1, e0 + kTabPages);
    const int seg_end = min(end, e1 << ushift);
    __syncthreads();  // the previous segment is done with tab
    for (int i = tid; i < e1 - e0; i += kSmThreads) {
      const int u = e0 + i;
      const int page = spec_ok && seg == begin && i == tid ? spec_page : list[u >> upshift];
      if constexpr (kPageIsBlock) {  // unit = page = block
        tab[i] = (static_cast<int64_t>(table[page]) * kv.num_kv_heads + g) * P * D;
      } else {
        const int t = (page << pshift) + ((u << ushift) & (P - 1));  // the unit's first token
        tab[i] = ((static_cast<int64_t>(table[t >> bshift]) * kv.num_kv_heads + g) * Pb + (t & (Pb - 1))) * D;
      }
    }
    __syncthreads();
    const int stages = (seg_end - seg + kStageTokens - 1) / kStageTokens;
    // Stage c: tokens [seg + c*32, ...) into buffer c & 1, K rows then V rows.
    auto issue = [&](int c) {
      const int t0 = seg + c * kStageTokens, cnt = min(kStageTokens, seg_end - t0);
      T* dst = stage + (c & 1) * Geo::kStageElems;
#pragma unroll
      for (int i = tid; i < 2 * kStageTokens * Geo::kPieces; i += kSmThreads) {
        const int which = i / (kStageTokens * Geo::kPieces), rem = i % (kStageTokens * Geo::kPieces);
        const int r = rem / Geo::kPieces, pc = rem % Geo::kPieces, j = t0 + r;
        const T* pool = which ? vpool : kpool;
        const bool ok = r < cnt;
        const T* src = ok ? pool + tab[(j >> ushift) - e0] + (j & (U - 1)) * D + pc * Geo::kVec : pool;
        CpAsync16(dst + which * kStageTokens * D + r * D + pc * Geo::kVec, src, ok);
      }
    };
    issue(0);
    CpAsyncCommit();
    for (int c = 0; c < stages; ++c) {
      if (c + 1 < stages) issue(c + 1);
      CpAsyncCommit();  // possibly empty: keeps "stage c is the older group"
      CpAsyncWait<1>();
      __syncthreads();
      const int cnt = min(kStageTokens, seg_end - (seg + c * kStageTokens));
      const T* ks = stage + (c & 1) * Geo::kStageElems;
      const T* vs = ks + kStageTokens * D;
      // 3. scores: kTw tokens x NH heads = 8 dot products per warp step, summed
      // together (WarpMultiSum: 9 shuffles, not 40). Rows past cnt are the
      // zeros cp.async wrote, never stored.
      constexpr int kTw = 8 / NH;
      for (int r0 = warp * kTw; r0 < cnt; r0 += kSmWarps * kTw) {
        float dots[8];
#pragma unroll
        for (int t = 0; t < kTw; ++t) {
          float k[kE];
          LoadLane<T, kE>(ks + (r0 + t) * D + lane * kE, k);
#pragma unroll
          for (int i = 0; i < NH; ++i) {
            float dot = 0.0f;
#pragma unroll
            for (int e = 0; e < kE; ++e) dot = fmaf(qr[i][e], k[e], dot);
            dots[t * NH + i] = dot;
          }
        }
        const float dot = WarpMultiSum<8>(dots);
        const int idx = lane >> 2, t = idx / NH, i = idx % NH;
        if ((lane & 3) == 0 && r0 + t < cnt && i < nh) sc[i][r0 + t] = dot;
      }
      __syncthreads();
      // 4. online softmax, a warp per head
      for (int i = warp; i < nh; i += kSmWarps) {
        const float s = lane < cnt ? sc[i][lane] : -INFINITY;
        const float m_old = run_m[i], m_new = fmaxf(m_old, WarpMax(s));
        const bool none = m_new == -INFINITY;  // only -inf scores so far
        const float w = none || lane >= cnt ? 0.0f : exp2f(s - m_new);
        sc[i][lane] = w;
        const float sum = WarpSum(w);
        const int pos = __popc(__ballot_sync(0xffffffffu, w > 0.0f));
        if (lane == 0) {
          const float f = none ? 1.0f : exp2f(m_old - m_new);
          corr[i] = f;
          run_m[i] = m_new;
          run_l[i] = run_l[i] * f + sum;
          run_n[i] += pos;
        }
      }
      __syncthreads();
      // 5. values
#pragma unroll
      for (int i = 0; i < NH; ++i) {
        const float f = i < nh ? corr[i] : 1.0f;
#pragma unroll
        for (int e = 0; e < kE; ++e) acc[i][e] *= f;
      }
      for (int r = warp; r < cnt; r += kSmWarps) {
        float v[kE];
        LoadLane<T, kE>(vs + r * D + lane * kE, v);
#pragma unroll
        for (int i = 0; i < NH; ++i) {
          const float w = i < nh ? sc[i][r] : 0.0f;
#pragma unroll
          for (int e = 0; e < kE; ++e) acc[i][e] = fmaf(w, v[e], acc[i][e]);
        }
      }
      __syncthreads();  // buffer c & 1 is reissued at c + 2
    }
    seg = seg_end;
  }

  // Sum the warps' accumulators (the stage buffers are free now).
  __syncthreads();
  float* red = reinterpret_cast<float*>(smem_raw);  // [kSmWarps, NH, D]; fits: see static_assert
  static_assert(kSmWarps * NH * D * 4 <= SmGeo<T, D>::kSmemBytes, "reduction buffer fits the stages");
#pragma unroll
  for (int i = 0; i < NH; ++i) {
#pragma unroll
    for (int e = 0; e < kE; ++e) red[(warp * NH + i) * D + lane * kE + e] = acc[i][e];
  }
  __syncthreads();
  const int64_t osb = p.out_stride_b ? p.out_stride_b : static_cast<int64_t>(H) * D;
  const int64_t osh = p.out_stride_h ? p.out_stride_h : D;
  for (int idx = tid; idx < nh * D; idx += kSmThreads) {
    const int i = idx / D, d = idx % D;
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kSmWarps; ++w) s += red[(w * NH + i) * D + d];
    const float lsum = run_l[i];
    const float o = lsum > 0.0f ? s / lsum : 0.0f;
    const int64_t bh = static_cast<int64_t>(b) * H + h0 + i;
    if (S == 1) {
      static_cast<T*>(p.out)[b * osb + (h0 + i) * osh + d] = FromF<T>(o);
      if (d == 0) {
        p.tau[bh] = lsum > 0.0f ? (run_m[i] + log2f(lsum)) * kLn2 : 0.0f;
        p.mass[bh] = lsum > 0.0f ? 1.0f : 0.0f;
        if (p.support) p.support[bh] = run_n[i];
      }
    } else {
      p.partial_out[(bh * S + split) * D + d] = o;
      if (d == 0) {
        p.partial_lse[(bh * S + split) * 2] = lsum > 0.0f ? run_m[i] + log2f(lsum) : -INFINITY;
        p.partial_lse[(bh * S + split) * 2 + 1] = static_cast<float>(run_n[i]);
      }
    }
  }
}

// (H, B) blocks of D threads: out = sum_s 2^(lse_s - lse) * partial_s.
template <class T, int D>
__global__ void __launch_bounds__(D) LseMergeKernel(const EntmaxSparseDecodeParams p) {
  const int b = blockIdx.y, h = blockIdx.x, d = threadIdx.x, S = p.num_splits;
  const int64_t bh = static_cast<int64_t>(b) * p.query.num_heads + h;
  PdlWaitForPrerequisite();  // the softmax kernel's partials
  const float* pl = p.partial_lse + bh * S * 2;
  const float* po = p.partial_out + bh * S * D + d;
  // The split statistics go through shared memory in one parallel load: a
  // per-thread loop over S L2 reads would be S round trips.
  __shared__ float lse[kEntmaxMaxSplits], cnt[kEntmaxMaxSplits];
  for (int s = d; s < S; s += D) lse[s] = pl[2 * s], cnt[s] = pl[2 * s + 1];
  __syncthreads();
  float m = -INFINITY;
  for (int s = 0; s < S; ++s) m = fmaxf(m, lse[s]);
  float tot = 0.0f, acc = 0.0f, support = 0.0f;
  if (m != -INFINITY) {
#pragma unroll 8
    for (int s = 0; s < S; ++s) {
      const float w = exp2f(lse[s] - m);  // 0 for empty splits (-inf)
      tot += w;
      acc = fmaf(w, po[static_cast<int64_t>(s) * D], acc);
      support += cnt[s];
    }
  }
  const int64_t osb = p.out_stride_b ? p.out_stride_b : static_cast<int64_t>(p.query.num_heads) * D;
  const int64_t osh = p.out_stride_h ? p.out_stride_h : D;
  static_cast<T*>(p.out)[b * osb + h * osh + d] = FromF<T>(tot > 0.0f ? acc / tot : 0.0f);
  if (d == 0) {
    p.tau[bh] = tot > 0.0f ? (m + log2f(tot)) * kLn2 : 0.0f;
    p.mass[bh] = tot > 0.0f ? 1.0f : 0.0f;
    if (p.support) p.support[bh] = static_cast<int32_t>(support);
  }
}

template <class T, int D, int NH>
cudaError_t LaunchSoftmaxTyped(const EntmaxSparseDecodeParams& p, cudaStream_t stream) {
  using Geo = SmGeo<T, D>;
  auto kernel =
      EntmaxBlockTokens(p.kv) == p.kv.page_size ? SoftmaxKernel<T, D, NH, true> : SoftmaxKernel<T, D, NH, false>;
  if (Geo::kSmemBytes > 48 * 1024) {
    KV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Geo::kSmemBytes));
  }
  KV_CUDA_CHECK(LaunchPdl(kernel, dim3(p.num_splits, p.sel.select_heads, p.kv.batch), dim3(kSmThreads),
                          Geo::kSmemBytes, stream, p));
  if (p.num_splits > 1) {
    KV_CUDA_CHECK(LaunchPdl(LseMergeKernel<T, D>, dim3(p.query.num_heads, p.kv.batch), dim3(D), 0, stream, p));
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace kvstream::entmax_detail

namespace kvstream {

cudaError_t LaunchEntmaxSoftmaxDecode(const EntmaxSparseDecodeParams& p, cudaStream_t stream) {
  if (EntmaxSparseDecodeValidate(p) != nullptr || !EntmaxSoftmaxFastPath(p)) return cudaErrorInvalidValue;
  if (p.kv.batch == 0) return cudaSuccess;
  if (p.kv.batch > 65535 || p.sel.select_heads > 65535 || p.query.num_heads > 65535) return cudaErrorInvalidValue;
  const int nh = p.query.num_heads / p.sel.select_heads;
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    if (nh <= 1) return entmax_detail::LaunchSoftmaxTyped<T, D, 1>(p, stream);
    if (nh <= 2) return entmax_detail::LaunchSoftmaxTyped<T, D, 2>(p, stream);
    if (nh <= 4) return entmax_detail::LaunchSoftmaxTyped<T, D, 4>(p, stream);
    return entmax_detail::LaunchSoftmaxTyped<T, D, 8>(p, stream);
  });
}

}  // namespace kvstream
