// Kernel bodies of akv_mixed_attention (see akv_attention.h for semantics and
// shapes). Included by the instantiation units under inst/ only.
//
// Mapping
//   grid  (S, Hkv * chunks, ceil(M / rpc)): one CTA per (split, KV head, head
//         chunk, block of rpc query rows). It serves QV "query vectors" (query
//         row, query head) that share the KV head, so every K/V byte it loads
//         is used QV times: v -> (row row0 + v / hc, head h0 + v % hc); vectors
//         past the chunk or M are inert (masked, never written).
//   block kWarps warps; the split's tokens (hot segment, then warm segment) are
//         dealt to warps in steps of kTpi tokens, round robin.
//   warp  lane = (token row, column slot): kVec = 16 bytes of T per lane and
//         D / kVec lanes per token (as kernels/dense), kRpl tokens per lane per
//         step. Warm lanes read the same kVec columns as kVec*b/8 code bytes
//         plus the group's fp16 scale/zero, so q and acc keep one register
//         layout for both tiers.
// Math: q pre-scaled by scale*log2(e); online softmax per lane row in fp32
//   (m, l, acc rescaled by exp2(m_old - m_new)); rows merged by shuffles,
//   warps through shared memory; lse = (m + log2 l) * ln 2. Warm rows are used
//   in the code domain, algebraically equal to dequantize-then-multiply (a
//   lane's columns share one group): q.k^ = scale * (q.code) + zero * sum(q),
//   p*v^ = (p*scale) * code + p*zero (the zero part summed once per lane);
//   codes become floats by bit operations (2^23 | code) - 2^23, exactly.
// Loads: plain 16-byte (hot) or 1-8 byte (warm) global loads; the loads of
//   step it+1 are issued before the math of step it (register prefetch).
// NOTE(akv): decode (M = 1) on bf16 with G <= kAkvAttnMmaMaxGroup is served by
//   the tensor-core kernel (akv_attention_mma.cuh), 2-4x faster at 8K-128K
//   warm rows (bench/attention/akv_attention_bench.cu); this CUDA-core kernel
//   serves prefill chunks, fp32 tiers and larger groups, and is the A/B
//   reference (AkvAttnPath::kCudaCore). It is bound by CUDA-core
//   instructions per byte (~15% of HBM bandwidth at 4-bit codes).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_device.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/common/pdl.cuh"

namespace kvstream::akv_attn_detail {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -__builtin_huge_valf();

template <class T, int D, int B, int QV>
struct Geo {
  static constexpr int kVec = Vec16<T>::kN;              // elements per 16 bytes
  static constexpr int kLpr = D / kVec;                   // lanes per token row
  static constexpr int kRpw = 32 / kLpr;                  // token rows per warp pass
  static constexpr int kRpl = (QV * kVec >= 32) ? 2 : 4;  // passes per step (register budget)
  static constexpr int kTpi = kRpl * kRpw;                // tokens per warp step
  static constexpr int kCodeBytes = kVec * B / 8;         // warm code bytes per lane per token
  static constexpr int kStateFloats = QV * D + 2 * QV;    // one warp's acc, m, l
  static_assert(kLpr >= 1 && kLpr <= 32 && 32 % kLpr == 0, "a row must split over a power-of-two lane count");
  static_assert(kCodeBytes == 1 || kCodeBytes == 2 || kCodeBytes == 4 || kCodeBytes == 8, "code load width");
  static_assert(QV >= 1 && QV <= 8, "query vectors per CTA");
};

// Flattened params (pointers already moved to the layer).
struct AttnArgs {
  const void* q = nullptr;           // [M, Hq, D]
  const int32_t* q_pos = nullptr;    // [M]
  const void* hot_k = nullptr;       // [C_hot, Hkv, D]
  const void* hot_v = nullptr;       // [C_hot, Hkv, D]
  const int32_t* hot_pos = nullptr;  // [C_hot]
  const uint8_t* warm_k = nullptr;   // [C_warm, Hkv, Cb]
  const uint8_t* warm_v = nullptr;   // [C_warm, Hkv, Cb]
  const uint16_t* wks = nullptr;     // [C_warm, Hkv, Gn] K scale
  const uint16_t* wkz = nullptr;     // K zero
  const uint16_t* wvs = nullptr;     // V scale
  const uint16_t* wvz = nullptr;     // V zero
  const int32_t* warm_pos = nullptr; // [C_warm]
  const int32_t* counts = nullptr;   // [kAkvCountSlots]
  void* out = nullptr;               // [M, Hq, D]
  float* lse = nullptr;              // [M, Hq] or null
  float* partial_out = nullptr;      // [M, Hq, S, D]
  float* partial_lse = nullptr;      // [M, Hq, S]
  int64_t q_stride_m = 0, q_stride_h = 0;  // elements
  int num_rows = 0, num_heads = 0, num_kv_heads = 0;
  int group = 0;     // Hq / Hkv
  int hc = 0;        // heads per chunk
  int chunks = 0;    // chunks per KV head
  int rpc = 0;       // query rows per CTA (QV / hc)
  int num_splits = 1;
  int hot_cap = 0, warm_cap = 0;
  int group_size = 0, groups = 0;  // g, Gn
  float scale_log2 = 0.0f;
};

// Per-lane online-softmax state of QV query vectors.
template <int QV, int kVec>
struct State {
  float q[QV][kVec];
  float m[QV], l[QV], acc[QV][kVec];
  float qsum[QV];  // sum of this lane's (scaled) q columns: the zero term of warm scores
  float zacc[QV];  // warm: sum_j p_j * zero_j of this lane's group, added to acc after the segment
  int qpos[QV];
};

// Raw loads of one warp step for one lane (kRpl token rows): 16-byte K/V
// slots (hot) or code words + the group's scale/zero (warm), and positions
// (INT_MAX for rows past the segment, so they are masked).
template <class T, int D, int B, int QV, bool kWarm>
struct Tile;

template <class T, int D, int B, int QV>
struct Tile<T, D, B, QV, false> {
  using G = Geo<T, D, B, QV>;
  uint4 k[G::kRpl], v[G::kRpl];
  int pos[G::kRpl];
  __device__ __forceinline__ void Load(const AttnArgs& a, int kvh, int tok0, int seg_e, int col, int) {
#pragma unroll
    for (int u = 0; u < G::kRpl; ++u) {
      const int t = tok0 + u * G::kRpw;
      k[u] = v[u] = make_uint4(0, 0, 0, 0);
      pos[u] = INT_MAX;
      if (t < seg_e) {
        const int64_t off = (static_cast<int64_t>(t) * a.num_kv_heads + kvh) * D + col * G::kVec;
        k[u] = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(a.hot_k) + off));
        v[u] = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(a.hot_v) + off));
        pos[u] = __ldg(a.hot_pos + t);
      }
    }
  }
  __device__ __forceinline__ void K(int u, float* f) const { Vec16<T>::Load(k[u], f); }
  __device__ __forceinline__ void V(int u, float* f) const { Vec16<T>::Load(v[u], f); }
};

template <class T, int D, int B, int QV>
struct Tile<T, D, B, QV, true> {
  using G = Geo<T, D, B, QV>;
  static constexpr uint32_t kMask = (1u << B) - 1u;
  static constexpr int kWords = (G::kCodeBytes + 3) / 4;  // 32-bit code words per lane and row
  uint32_t kc[G::kRpl][kWords], vc[G::kRpl][kWords];
  float ks[G::kRpl], kz[G::kRpl], vs[G::kRpl], vz[G::kRpl];
  int pos[G::kRpl];
  __device__ __forceinline__ void Load(const AttnArgs& a, int kvh, int tok0, int seg_e, int col, int lane_grp) {
#pragma unroll
    for (int u = 0; u < G::kRpl; ++u) {
      const int t = tok0 + u * G::kRpw;
      uint64_t kw = 0, vw = 0;
      ks[u] = kz[u] = vs[u] = vz[u] = 0.0f;
      pos[u] = INT_MAX;
      if (t < seg_e) {
        const int64_t slice = static_cast<int64_t>(t) * a.num_kv_heads + kvh;
        const int64_t cbyte = slice * (D * B / 8) + col * G::kCodeBytes;
        kw = akv_detail::LoadBytes<G::kCodeBytes>(a.warm_k + cbyte);
        vw = akv_detail::LoadBytes<G::kCodeBytes>(a.warm_v + cbyte);
        const int64_t gi = slice * a.groups + lane_grp;
        ks[u] = akv_detail::HalfBitsToF(__ldg(a.wks + gi));
        kz[u] = akv_detail::HalfBitsToF(__ldg(a.wkz + gi));
        vs[u] = akv_detail::HalfBitsToF(__ldg(a.wvs + gi));
        vz[u] = akv_detail::HalfBitsToF(__ldg(a.wvz + gi));
        pos[u] = __ldg(a.warm_pos + t);
      }
#pragma unroll
      for (int w = 0; w < kWords; ++w) {
        kc[u][w] = static_cast<uint32_t>(kw >> (32 * w));
        vc[u][w] = static_cast<uint32_t>(vw >> (32 * w));
      }
    }
  }
  // Code e of row u as a float: 2^23 + code built by bit operations, minus
  // 2^23 (exact; avoids the slow integer-to-float conversion).
  __device__ __forceinline__ static float CodeF(const uint32_t* words, int e) {
    const uint32_t c = (words[(e * B) / 32] >> ((e * B) % 32)) & kMask;
    return __uint_as_float(0x4B000000u | c) - 8388608.0f;
  }
  __device__ __forceinline__ void K(int u, float* f) const {
#pragma unroll
    for (int e = 0; e < G::kVec; ++e) f[e] = CodeF(kc[u], e);
  }
  __device__ __forceinline__ void V(int u, float* f) const {
#pragma unroll
    for (int e = 0; e < G::kVec; ++e) f[e] = CodeF(vc[u], e);
  }
};

// Scores, mask and online-softmax update of one loaded warp step.
template <class T, int D, int B, int QV, bool kWarm>
__device__ __forceinline__ void Compute(const Tile<T, D, B, QV, kWarm>& tile, State<QV, Geo<T, D, B, QV>::kVec>& st) {
  using G = Geo<T, D, B, QV>;
  constexpr int kVec = G::kVec, kLpr = G::kLpr, kRpl = G::kRpl;
  // Scores of this lane's columns, then summed over the row's kLpr lanes.
  float s[kRpl][QV];
#pragma unroll
  for (int u = 0; u < kRpl; ++u) {
    float kf[kVec];
    tile.K(u, kf);  // warm: codes, so q . k^ = scale * (q . code) + zero * sum(q)
#pragma unroll
    for (int v = 0; v < QV; ++v) {
      float dot = 0.0f;
#pragma unroll
      for (int e = 0; e < kVec; ++e) dot = fmaf(st.q[v][e], kf[e], dot);
      if constexpr (kWarm) dot = fmaf(dot, tile.ks[u], tile.kz[u] * st.qsum[v]);
      s[u][v] = dot;
    }
  }
#pragma unroll
  for (int off = kLpr / 2; off > 0; off /= 2) {
#pragma unroll
    for (int u = 0; u < kRpl; ++u) {
#pragma unroll
      for (int v = 0; v < QV; ++v) s[u][v] += __shfl_xor_sync(0xffffffffu, s[u][v], off);
    }
  }
  // Causal / range mask (rows past the segment carry pos INT_MAX).
#pragma unroll
  for (int u = 0; u < kRpl; ++u) {
#pragma unroll
    for (int v = 0; v < QV; ++v) {
      if (tile.pos[u] > st.qpos[v]) s[u][v] = kNegInf;
    }
  }
  // Online softmax; s becomes the weights.
#pragma unroll
  for (int v = 0; v < QV; ++v) {
    float mx = st.m[v];
#pragma unroll
    for (int u = 0; u < kRpl; ++u) mx = fmaxf(mx, s[u][v]);
    const float m_use = mx == kNegInf ? 0.0f : mx;  // nothing visible yet: weights stay 0
    const float corr = FastExp2(st.m[v] - m_use);
    st.m[v] = mx;
    st.l[v] *= corr;
    st.zacc[v] *= corr;
#pragma unroll
    for (int e = 0; e < kVec; ++e) st.acc[v][e] *= corr;
#pragma unroll
    for (int u = 0; u < kRpl; ++u) {
      s[u][v] = FastExp2(s[u][v] - m_use);
      st.l[v] += s[u][v];
    }
  }
#pragma unroll
  for (int u = 0; u < kRpl; ++u) {
    float vf[kVec];
    tile.V(u, vf);  // warm: p * v^ = (p * scale) * code + p * zero; the zero part goes to zacc
#pragma unroll
    for (int v = 0; v < QV; ++v) {
      float w = s[u][v];
      if constexpr (kWarm) {
        st.zacc[v] = fmaf(w, tile.vz[u], st.zacc[v]);
        w *= tile.vs[u];
      }
#pragma unroll
      for (int e = 0; e < kVec; ++e) st.acc[v][e] = fmaf(w, vf[e], st.acc[v][e]);
    }
  }
}

// Processes tokens [seg_b, seg_e) of one tier (kWarm: the warm tier). The
// loads of step it+1 are issued before the math of step it (one step of
// register prefetch), so each lane keeps two steps of loads in flight.
template <class T, int D, int B, int QV, bool kWarm>
__device__ __forceinline__ void Segment(const AttnArgs& a, int kvh, int seg_b, int seg_e, int warp, int row,
                                        int col, State<QV, Geo<T, D, B, QV>::kVec>& st) {
  using G = Geo<T, D, B, QV>;
  constexpr int kTpi = G::kTpi;
  const int span = seg_e - seg_b;
  const int n_it = span > warp * kTpi ? (span - warp * kTpi + kWarps * kTpi - 1) / (kWarps * kTpi) : 0;
  const int lane_grp = col * G::kVec / a.group_size;
  auto tok0 = [&](int it) { return seg_b + (it * kWarps + warp) * kTpi + row; };
  if (n_it == 0) return;
  Tile<T, D, B, QV, kWarm> cur;
  cur.Load(a, kvh, tok0(0), seg_e, col, lane_grp);
  for (int it = 0; it < n_it; ++it) {
    Tile<T, D, B, QV, kWarm> nxt;
    const bool more = it + 1 < n_it;  // warp-uniform
    if (more) nxt.Load(a, kvh, tok0(it + 1), seg_e, col, lane_grp);
    Compute(cur, st);
    if (more) cur = nxt;
  }
}

// Query vector v of this CTA -> (query row i, query head h); false if inert.
__device__ __forceinline__ bool VectorOf(const AttnArgs& a, int v, int* i, int* h) {
  const int chunk = blockIdx.y % a.chunks, kvh = blockIdx.y / a.chunks;
  const int rr = v / a.hc, hh = v % a.hc;
  const int hcount = min(a.hc, a.group - chunk * a.hc);
  *i = blockIdx.z * a.rpc + rr;
  *h = kvh * a.group + chunk * a.hc + hh;
  return rr < a.rpc && *i < a.num_rows && hh < hcount;
}

template <class T, int D, int B, int QV>
__global__ void __launch_bounds__(kThreads, QV == 1 ? 4 : (QV <= 4 ? 3 : 2)) AkvAttentionKernel(const AttnArgs a) {
  using G = Geo<T, D, B, QV>;
  constexpr int kVec = G::kVec, kLpr = G::kLpr;
  __shared__ __align__(16) float smem[kWarps * G::kStateFloats];

  const int split = blockIdx.x, kvh = blockIdx.y / a.chunks;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = lane / kLpr, col = lane % kLpr;
  const int n_hot = min(max(a.counts[kAkvNHot], 0), a.hot_cap);
  const int n_warm = min(max(a.counts[kAkvNWarm], 0), a.warm_cap);
  int begin = 0, end = 0;
  AkvAttentionSplitRange(n_hot, n_warm, a.num_splits, split, &begin, &end);

  State<QV, kVec> st;
#pragma unroll
  for (int v = 0; v < QV; ++v) {
    int i = 0, h = 0;
    const bool valid = VectorOf(a, v, &i, &h);
    st.qpos[v] = valid ? __ldg(a.q_pos + i) : INT_MIN;  // inert vectors see nothing
    st.m[v] = kNegInf;
    st.l[v] = 0.0f;
    st.zacc[v] = 0.0f;
#pragma unroll
    for (int e = 0; e < kVec; ++e) st.acc[v][e] = st.q[v][e] = 0.0f;
    if (valid) {
      const T* qp = static_cast<const T*>(a.q) + i * a.q_stride_m + h * a.q_stride_h + col * kVec;
      Vec16<T>::Load(__ldg(reinterpret_cast<const uint4*>(qp)), st.q[v]);
#pragma unroll
      for (int e = 0; e < kVec; ++e) st.q[v][e] *= a.scale_log2;
    }
    st.qsum[v] = 0.0f;
#pragma unroll
    for (int e = 0; e < kVec; ++e) st.qsum[v] += st.q[v][e];
  }

  Segment<T, D, B, QV, false>(a, kvh, begin, min(end, n_hot), warp, row, col, st);
  Segment<T, D, B, QV, true>(a, kvh, max(begin, n_hot) - n_hot, max(end - n_hot, 0), warp, row, col, st);
#pragma unroll
  for (int v = 0; v < QV; ++v) {
#pragma unroll
    for (int e = 0; e < kVec; ++e) st.acc[v][e] += st.zacc[v];
  }

  // Merge the kRpw row states of the warp (lanes kLpr, 2*kLpr, ... apart).
#pragma unroll
  for (int off = kLpr; off < 32; off *= 2) {
#pragma unroll
    for (int v = 0; v < QV; ++v) {
      const float m_o = __shfl_xor_sync(0xffffffffu, st.m[v], off);
      const float l_o = __shfl_xor_sync(0xffffffffu, st.l[v], off);
      const float mx = fmaxf(st.m[v], m_o);
      const float m_use = mx == kNegInf ? 0.0f : mx;
      const float c_self = FastExp2(st.m[v] - m_use), c_other = FastExp2(m_o - m_use);
      st.l[v] = st.l[v] * c_self + l_o * c_other;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float acc_o = __shfl_xor_sync(0xffffffffu, st.acc[v][e], off);
        st.acc[v][e] = st.acc[v][e] * c_self + acc_o * c_other;
      }
      st.m[v] = mx;
    }
  }
  float* mine = smem + warp * G::kStateFloats;  // [QV][D] acc, m[QV], l[QV]
  if (row == 0) {
#pragma unroll
    for (int v = 0; v < QV; ++v) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) mine[v * D + col * kVec + e] = st.acc[v][e];
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int v = 0; v < QV; ++v) {
      mine[QV * D + v] = st.m[v];
      mine[QV * D + QV + v] = st.l[v];
    }
  }
  __syncthreads();

  // Merge the warps: one thread per (query vector, 16-byte column slot).
  for (int item = threadIdx.x; item < QV * kLpr; item += kThreads) {
    const int v = item / kLpr, c = item % kLpr;
    int i = 0, h = 0;
    if (!VectorOf(a, v, &i, &h)) continue;
    float mx = kNegInf;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, smem[w * G::kStateFloats + QV * D + v]);
    const float m_use = mx == kNegInf ? 0.0f : mx;
    float sum = 0.0f, o[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) o[e] = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float* ws = smem + w * G::kStateFloats;
      const float cw = FastExp2(ws[QV * D + v] - m_use);
      sum += ws[QV * D + QV + v] * cw;
#pragma unroll
      for (int e = 0; e < kVec; ++e) o[e] += cw * ws[v * D + c * kVec + e];
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
    for (int e = 0; e < kVec; ++e) o[e] *= inv;
    const float lse = sum > 0.0f ? (mx + __log2f(sum)) * kLn2 : kNegInf;
    const int64_t orow = static_cast<int64_t>(i) * a.num_heads + h;
    if (a.num_splits == 1) {
      T* op = static_cast<T*>(a.out) + orow * D + c * kVec;
      *reinterpret_cast<uint4*>(op) = Vec16<T>::Store(o);
      if (c == 0 && a.lse != nullptr) a.lse[orow] = lse;
    } else {
      const int64_t prow = orow * a.num_splits + split;
      float* pp = a.partial_out + prow * D + c * kVec;
#pragma unroll
      for (int e = 0; e < kVec; e += 4)
        *reinterpret_cast<float4*>(pp + e) = make_float4(o[e], o[e + 1], o[e + 2], o[e + 3]);
      if (c == 0) a.partial_lse[prow] = lse;
    }
  }
}

// Merges S partials of each (row, head) by lse. Grid (rows, D / 32), block
// kMergeWarps warps, lane = column (a warp reads 128 contiguous bytes of a
// split's row). Warp w folds splits w, w + kMergeWarps, ... into its own
// online-softmax state (max, sum, acc), the lse and partials of kMergeBatch
// splits loaded before any is used (one L2 round trip per batch), then the
// warps' states are combined in shared memory. The first version (8 warps,
// the S weights first through two block-wide reductions, then one dependent
// load round per 4 splits) took ~5.7 us at S = 144 (ncu, (1, 8K) decode
// step: bench/results/gpu/ncu_akv_step_1x8k_s16_h100.json), 44% of the
// attention grid before it; one CTA per (row, head) over all D columns left
// a one-sequence merge 32 CTAs (10 us at S = 528). Launched as a programmatic
// dependent of the attention grid (kernels/common/pdl.cuh), as the dense
// merge is: it is scheduled while that grid runs and waits in
// griddepcontrol.wait, so its launch latency leaves the decode step's
// critical path, and the output projection after it (a programmatic
// dependent too) may start its weight reads while the merge drains.
constexpr int kMergeWarps = 16;
constexpr int kMergeBatch = 8;

template <class T, int D>
__global__ void __launch_bounds__(kMergeWarps * 32) AkvAttentionMergeKernel(const AttnArgs a) {
  __shared__ float wm[kMergeWarps], wl[kMergeWarps], wacc[kMergeWarps][32];
  const int64_t rowi = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, col = blockIdx.y * 32 + lane, S = a.num_splits;
  PdlWaitForPrerequisite();  // the attention grid's partials are complete and visible
  PdlLaunchDependents();
  const float* lse = a.partial_lse + rowi * S;
  const float* part = a.partial_out + rowi * S * D + col;
  float m = kNegInf, l = 0.0f, acc = 0.0f;
  for (int s0 = warp; s0 < S; s0 += kMergeWarps * kMergeBatch) {
    float ls[kMergeBatch], p[kMergeBatch];
#pragma unroll
    for (int j = 0; j < kMergeBatch; ++j) {
      const int s = s0 + j * kMergeWarps;
      ls[j] = s < S ? __ldg(lse + s) : kNegInf;
      p[j] = s < S ? __ldg(part + static_cast<int64_t>(s) * D) : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kMergeBatch; ++j) {
      if (ls[j] == kNegInf) continue;  // empty split (or past S): weight 0
      const float mn = fmaxf(m, ls[j]);
      const float c_old = FastExp2((m - mn) * kLog2e), c_new = FastExp2((ls[j] - mn) * kLog2e);  // m = -inf: 0
      l = fmaf(l, c_old, c_new);
      acc = fmaf(acc, c_old, p[j] * c_new);
      m = mn;
    }
  }
  if (lane == 0) wm[warp] = m, wl[warp] = l;
  wacc[warp][lane] = acc;
  __syncthreads();
  if (warp != 0) return;
  float mx = kNegInf;
#pragma unroll
  for (int w = 0; w < kMergeWarps; ++w) mx = fmaxf(mx, wm[w]);
  float sum = 0.0f, o = 0.0f;
  if (mx != kNegInf) {
#pragma unroll
    for (int w = 0; w < kMergeWarps; ++w) {
      const float c = FastExp2((wm[w] - mx) * kLog2e);  // a warp with no live split: -inf -> 0
      sum = fmaf(wl[w], c, sum);
      o = fmaf(wacc[w][lane], c, o);
    }
  }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  static_cast<T*>(a.out)[rowi * D + col] = akv_detail::FromF<T>(o * inv);
  if (col == 0 && a.lse != nullptr) a.lse[rowi] = sum > 0.0f ? mx + logf(sum) : kNegInf;
}

// Enqueues the merge of `rows` (row, head) pairs.
template <class T, int D>
cudaError_t LaunchAkvMerge(const AttnArgs& a, int64_t rows, cudaStream_t stream) {
  return LaunchPdl(AkvAttentionMergeKernel<T, D>, dim3(static_cast<unsigned>(rows), D / 32), dim3(kMergeWarps * 32),
                   0, stream, a);
}

}  // namespace kvstream::akv_attn_detail
