// K2 sq_attend kernel body (semantics and shapes: sq_attend.h; spec §4.4, §7).
//
// Mapping: grid (Hkv, row tiles, S). A CTA serves kR = 4 query rows (hq, t)
// of one KV head (row rr = t * G + g, so decode's G heads share one CTA and
// every record is read once per tile) over split s's keys; its 4 warps take
// 32-key chunks round robin.
// Per chunk a warp
//   1. has the chunk's K and V records copied (cp.async, issued one chunk
//      ahead: double-buffered) to per-warp shared tiles (odd word stride:
//      lane-per-key reads are bank-conflict free);
//   2. K phase, lane = key: walks the D fields in order (a field may straddle
//      two words: funnel shift), looks the unit centroid up in shared memory
//      and accumulates kR scores against q'_i * s_i * scale * log2(e);
//      dense keys dot the raw q; QJL adds r_norm * sum_m +-sk_m;
//   3. online softmax in log2 units per row (m, lane-partial l, acc rescaled);
//   4. V phase, lane = D/32 consecutive value dims (back-to-back fields: they
//      span <= 2 words, one funnel shift per key), acc += p * U[code]; dense
//      keys accumulate raw v into the A_dense accumulator.
// Warps merge through shared memory; s_i of V is applied once at the end. With
// S > 1 the CTA writes (A * 2^-M, M, L) per row to the workspace and
// MergeKernel combines the splits.
// NOTE(sq): fp32 FMAs on CUDA cores: ~4 G D flops per key and head; a
// tensor-core variant (centroids as bf16 fragments) is the next step if the
// bench shows the kernel compute-bound at Tk >= 32K.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/common/device_math.cuh"
#include "kernels/spectral_quant/sq_attend.h"

namespace kvstream {
namespace sq_attend_detail {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kR = kSqAttendRowTile;
static_assert(kR == 4, "the kernel packs one row tile into a float4");
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kSqrtHalfPi = 1.2533141373155003f;
constexpr float kNegInf = -__builtin_huge_valf();

struct Args {
  SqAttendParams p;
  int group, rows, n_total;  // G, G * Tq, Tk + Td
  int wkp, wvp;              // tile strides in words (odd, >= W + 1)
  int64_t dstride;           // dense row stride (elements)
  float scale_log2;          // scale * log2(e)
};

inline int TileStride(int words) { return (words % 2 == 0) ? words + 1 : words + 2; }

// Floats of dynamic shared memory (see the layout in AttendKernel).
inline size_t SmemFloats(int D, int wkp, int wvp) {
  const size_t fixed = 12 * static_cast<size_t>(D) + kSqCentroidFloats + 2 + D;  // 2: pad to x4
  const size_t tiles = kWarps * (128 + 2 * 32 * (static_cast<size_t>(wkp) + wvp));  // double-buffered
  const size_t merge = kWarps * (2 * kR * static_cast<size_t>(D) + 2 * kR);
  return fixed + (tiles > merge ? tiles : merge);
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// 4-byte asynchronous global -> shared copy (sm_80+), its commit and wait.
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(gmem) : "memory");
}
__device__ __forceinline__ void CpAsyncCommitGroup() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void CpAsyncWaitGroup1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

__device__ __forceinline__ void Set(float4& v, int r, float x) {
  if (r == 0) v.x = x; else if (r == 1) v.y = x; else if (r == 2) v.z = x; else v.w = x;
}

// kDense = false (Td == 0) compiles the dense-segment paths and accumulators out.
template <int D, class TD, bool kDense>
__global__ void __launch_bounds__(kThreads) AttendKernel(Args a) {
  constexpr int kDpl = D / 32;
  const SqAttendParams& p = a.p;
  extern __shared__ float4 smem4[];
  // Layout (floats): qs4 [D] x4 | qr4 [D] x4 | sk4 [D] x4 | ctab [512] | kdesc [D] u32 | per-warp regions
  float4* qs4 = smem4;
  float4* qr4 = qs4 + D;
  float4* sk4 = qr4 + D;
  float* ctab = reinterpret_cast<float*>(sk4 + D);
  uint32_t* kdesc = reinterpret_cast<uint32_t*>(ctab + kSqCentroidFloats + 2);
  float* region = reinterpret_cast<float*>(kdesc + D);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int h = blockIdx.x, rr0 = blockIdx.y * kR, split = blockIdx.z;
  const int Hkv = p.num_kv_heads, G = a.group, Tq = p.num_queries, Tk = p.num_keys;
  const bool qjl = p.q_sketch != nullptr && Tk > 0;
  const int de = qjl ? p.k_plan.d_eff[h] : 0;
  const int de_used = qjl ? min(de, 32 * p.sign_words) : 0;

  // ---- setup: tables, K field descriptors, scaled query rows ----
  for (int i = tid; i < kSqCentroidFloats; i += kThreads) ctab[i] = p.tables[i];
  for (int i = tid; i < D; i += kThreads) {
    float s = 0.0f;
    if (Tk > 0) {
      const int w = p.k_plan.width[h * D + i];
      kdesc[i] = static_cast<uint32_t>(SqCentroidOffset(w)) | (static_cast<uint32_t>(w) << 9) |
                 (static_cast<uint32_t>(p.k_plan.bit_offset[h * D + i]) << 16);
      s = p.k_plan.scale[h * D + i];
    }
    float4 q = make_float4(0.f, 0.f, 0.f, 0.f), qr = q, sk = q;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const int rr = rr0 + r;
      if (rr >= a.rows) continue;
      const int64_t row = (static_cast<int64_t>(h * G + rr % G) * Tq + rr / G) * D;
      Set(q, r, p.q_rot[row + i] * s * a.scale_log2);
      if (kDense) Set(qr, r, p.q_raw[row + i] * a.scale_log2);
      if (qjl && i < de_used) Set(sk, r, p.q_sketch[row + i] * a.scale_log2 * (kSqrtHalfPi / de));
    }
    qs4[i] = q, qr4[i] = qr, sk4[i] = sk;
  }
  int qpos[kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    const int rr = rr0 + r;
    qpos[r] = rr >= a.rows ? INT_MIN : (p.q_pos ? p.q_pos[rr / G] : INT_MAX);
  }
  // This lane's value fields: dims [c0, c0 + kDpl), contiguous bits from voff0.
  const int c0 = lane * kDpl;
  int vk0 = 0, vsh0 = 0, vw[kDpl], vtoff[kDpl];
#pragma unroll
  for (int e = 0; e < kDpl; ++e) vw[e] = 1, vtoff[e] = 0;
  if (Tk > 0) {
    const int off0 = p.v_plan.bit_offset[h * D + c0];
    vk0 = off0 >> 5, vsh0 = off0 & 31;
#pragma unroll
    for (int e = 0; e < kDpl; ++e) vw[e] = p.v_plan.width[h * D + c0 + e], vtoff[e] = SqCentroidOffset(vw[e]);
  }
  __syncthreads();

  // Per warp: ptile [32] float4 | 2 x (ktile [32][wkp] | vtile [32][wvp]) (double buffer).
  const int tile_words = 32 * (a.wkp + a.wvp);
  float* wreg = region + warp * (128 + 2 * tile_words);
  float4* ptile = reinterpret_cast<float4*>(wreg);
  uint32_t* tiles = reinterpret_cast<uint32_t*>(wreg + 128);
  const int Wk = p.k_plan.words, Wv = p.v_plan.words;
  const float inv_wk = Tk > 0 ? 1.0f / Wk : 0.0f, inv_wv = Tk > 0 ? 1.0f / Wv : 0.0f;
  const TD* dk = static_cast<const TD*>(p.dense_k);
  const TD* dv = static_cast<const TD*>(p.dense_v);

  float m[kR], lsum[kR], acc_e[kDpl][kR], acc_d[kDpl][kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    m[r] = kNegInf, lsum[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < kDpl; ++e) acc_e[e][r] = 0.0f, acc_d[e][r] = 0.0f;
  }
  int kb, ke;
  SqAttendSplitRange(a.n_total, p.num_splits, split, &kb, &ke);

  // 1. Asynchronous copies of a chunk's compressed K and V records into tile
  //    buffer `buf` (4-byte cp.async: records are only word-aligned).
  auto issue = [&](int j0, int buf) {
    const int nc = max(0, min(Tk - j0, min(32, ke - j0)));
    uint32_t* kt = tiles + buf * tile_words;
    uint32_t* vt = kt + 32 * a.wkp;
#pragma unroll 4
    for (int idx = lane; idx < nc * Wk; idx += 32) {
      const int tok = __float2int_rz((idx + 0.5f) * inv_wk), wd = idx - tok * Wk;
      CpAsync4(kt + tok * a.wkp + wd, p.k_records + (static_cast<int64_t>(j0 + tok) * Hkv + h) * Wk + wd);
    }
#pragma unroll 4
    for (int idx = lane; idx < nc * Wv; idx += 32) {
      const int tok = __float2int_rz((idx + 0.5f) * inv_wv), wd = idx - tok * Wv;
      CpAsync4(vt + tok * a.wvp + wd, p.v_records + (static_cast<int64_t>(j0 + tok) * Hkv + h) * Wv + wd);
    }
    CpAsyncCommitGroup();
  };

  int buf = 0;
  if (kb + warp * 32 < ke) issue(kb + warp * 32, 0);
  for (int j0 = kb + warp * 32; j0 < ke; j0 += kWarps * 32, buf ^= 1) {
    const int nk = min(32, ke - j0);
    const int nc = max(0, min(Tk - j0, nk));  // compressed keys come first
    // Prefetch the warp's next chunk into the other buffer (an empty group if none).
    if (j0 + kWarps * 32 < ke) {
      issue(j0 + kWarps * 32, buf ^ 1);
    } else {
      CpAsyncCommitGroup();
    }
    CpAsyncWaitGroup1();  // this chunk's copies (all but the newest group) are done
    const uint32_t* ktile = tiles + buf * tile_words;
    const uint32_t* vtile = ktile + 32 * a.wkp;
    __syncwarp();
    // 2. K phase: lane = key j
    const int j = j0 + lane;
    float sc[kR] = {0.f, 0.f, 0.f, 0.f};
    int pos = INT_MAX;
    if (lane < nc) {
      const uint32_t* rec = ktile + lane * a.wkp;
      int cur = 0;
      uint32_t lo = rec[0], hi = rec[1];
#pragma unroll 8
      for (int i = 0; i < D; ++i) {
        const uint32_t d = kdesc[i];
        const int off = static_cast<int>(d >> 16), k = off >> 5;
        if (k != cur) lo = rec[k], hi = rec[k + 1], cur = k;
        const uint32_t w = (d >> 9) & 15u;
        const uint32_t code = __funnelshift_r(lo, hi, off & 31) & ((1u << w) - 1u);
        const float u = ctab[(d & 511u) + code];
        const float4 q = qs4[i];
        sc[0] = fmaf(q.x, u, sc[0]), sc[1] = fmaf(q.y, u, sc[1]);
        sc[2] = fmaf(q.z, u, sc[2]), sc[3] = fmaf(q.w, u, sc[3]);
      }
      if (qjl) {
        const uint32_t* sg = p.k_signs + (static_cast<int64_t>(j) * Hkv + h) * p.sign_words;
        float c[kR] = {0.f, 0.f, 0.f, 0.f};
        uint32_t word = 0;
        for (int mm = 0; mm < de_used; ++mm) {
          if ((mm & 31) == 0) word = sg[mm >> 5];
          const float4 s = sk4[mm];
          const float sgn = ((word >> (mm & 31)) & 1u) ? 1.0f : -1.0f;
          c[0] = fmaf(sgn, s.x, c[0]), c[1] = fmaf(sgn, s.y, c[1]);
          c[2] = fmaf(sgn, s.z, c[2]), c[3] = fmaf(sgn, s.w, c[3]);
        }
        const float rn = __half2float(__ushort_as_half(p.k_rnorm[static_cast<int64_t>(j) * Hkv + h]));
#pragma unroll
        for (int r = 0; r < kR; ++r) sc[r] = fmaf(rn, c[r], sc[r]);
      }
      pos = p.k_pos ? p.k_pos[j] : j;
    } else if (kDense && lane < nk) {
      const TD* krow = dk + static_cast<int64_t>(j - Tk) * a.dstride + static_cast<int64_t>(h) * D;
#pragma unroll 8
      for (int i = 0; i < D; ++i) {
        const float x = ToF<TD>(krow[i]);
        const float4 q = qr4[i];
        sc[0] = fmaf(q.x, x, sc[0]), sc[1] = fmaf(q.y, x, sc[1]);
        sc[2] = fmaf(q.z, x, sc[2]), sc[3] = fmaf(q.w, x, sc[3]);
      }
      pos = p.d_pos ? p.d_pos[j - Tk] : j;
    }
    // 3. mask and online softmax (log2 units); l stays lane-partial until the end
    float4 pv;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      if (lane >= nk || pos > qpos[r]) sc[r] = kNegInf;
      const float mnew = fmaxf(m[r], WarpMax(sc[r]));
      const float alpha = m[r] == kNegInf ? 0.0f : FastExp2(m[r] - mnew);
      const float pr = sc[r] == kNegInf ? 0.0f : FastExp2(sc[r] - mnew);
      lsum[r] = fmaf(lsum[r], alpha, pr);
      m[r] = mnew;
#pragma unroll
      for (int e = 0; e < kDpl; ++e) acc_e[e][r] *= alpha, acc_d[e][r] *= alpha;
      Set(pv, r, pr);
    }
    ptile[lane] = pv;
    __syncwarp();
    // 4. V phase: lane = kDpl consecutive value dims
    for (int tok = 0; tok < nc; ++tok) {
      const float4 pt = ptile[tok];
      if (pt.x == 0.0f && pt.y == 0.0f && pt.z == 0.0f && pt.w == 0.0f) continue;  // masked key (uniform)
      const uint32_t* rec = vtile + tok * a.wvp;
      uint32_t x = __funnelshift_r(rec[vk0], rec[vk0 + 1], vsh0);
#pragma unroll
      for (int e = 0; e < kDpl; ++e) {
        const float u = ctab[vtoff[e] + (x & ((1u << vw[e]) - 1u))];
        x >>= vw[e];
        acc_e[e][0] = fmaf(pt.x, u, acc_e[e][0]), acc_e[e][1] = fmaf(pt.y, u, acc_e[e][1]);
        acc_e[e][2] = fmaf(pt.z, u, acc_e[e][2]), acc_e[e][3] = fmaf(pt.w, u, acc_e[e][3]);
      }
    }
    for (int tok = nc; kDense && tok < nk; ++tok) {
      const float4 pt = ptile[tok];
      if (pt.x == 0.0f && pt.y == 0.0f && pt.z == 0.0f && pt.w == 0.0f) continue;
      const TD* vrow = dv + static_cast<int64_t>(j0 + tok - Tk) * a.dstride + static_cast<int64_t>(h) * D + c0;
#pragma unroll
      for (int e = 0; e < kDpl; ++e) {
        const float x = ToF<TD>(vrow[e]);
        acc_d[e][0] = fmaf(pt.x, x, acc_d[e][0]), acc_d[e][1] = fmaf(pt.y, x, acc_d[e][1]);
        acc_d[e][2] = fmaf(pt.z, x, acc_d[e][2]), acc_d[e][3] = fmaf(pt.w, x, acc_d[e][3]);
      }
    }
    __syncwarp();  // the next iteration prefetches into this buffer and rewrites ptile
  }

  // ---- merge the warps (the merge area aliases the tiles) ----
#pragma unroll
  for (int r = 0; r < kR; ++r) lsum[r] = WarpSum(lsum[r]);
  __syncthreads();
  float* wm = region;                    // [kWarps][kR]
  float* wl = wm + kWarps * kR;          // [kWarps][kR]
  float* we = wl + kWarps * kR;          // [kWarps][kR][D]
  float* wd = we + kWarps * kR * D;      // [kWarps][kR][D]
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    if (lane == r) wm[warp * kR + r] = m[r], wl[warp * kR + r] = lsum[r];
#pragma unroll
    for (int e = 0; e < kDpl; ++e) {
      we[(warp * kR + r) * D + c0 + e] = acc_e[e][r];
      if (kDense) wd[(warp * kR + r) * D + c0 + e] = acc_d[e][r];
    }
  }
  __syncthreads();
  for (int idx = tid; idx < kR * D; idx += kThreads) {
    const int r = idx / D, i = idx % D, rr = rr0 + r;
    if (rr >= a.rows) continue;
    float M = kNegInf;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wm[w * kR + r]);
    float L = 0.0f, Ae = 0.0f, Ad = 0.0f;
    if (M != kNegInf) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float mw = wm[w * kR + r];
        if (mw == kNegInf) continue;
        const float f = FastExp2(mw - M);
        L = fmaf(wl[w * kR + r], f, L);
        Ae = fmaf(we[(w * kR + r) * D + i], f, Ae);
        if (kDense) Ad = fmaf(wd[(w * kR + r) * D + i], f, Ad);
      }
    }
    const float vs = Tk > 0 ? p.v_plan.scale[h * D + i] : 0.0f;
    const int hq = h * G + rr % G, t = rr / G;
    const int64_t row = static_cast<int64_t>(hq) * Tq + t;
    if (p.num_splits == 1) {
      const float inv = L > 0.0f ? 1.0f / L : 0.0f;
      p.a_eig[row * D + i] = Ae * vs * inv;
      if (p.a_dense) p.a_dense[row * D + i] = Ad * inv;
    } else {
      float* ws = static_cast<float*>(p.workspace) +
                  ((static_cast<int64_t>(split) * p.num_q_heads * Tq) + row) * (2 * D + 2);
      ws[i] = Ae * vs;
      if (kDense) ws[D + i] = Ad;
      if (i == 0) ws[2 * D] = M, ws[2 * D + 1] = L;
    }
  }
}

// Combines S partials per row: one CTA of D threads per (hq, t).
template <int D>
__global__ void __launch_bounds__(D) MergeKernel(SqAttendParams p) {
  const int64_t row = blockIdx.x;
  const int i = threadIdx.x, S = p.num_splits;
  const int64_t rows = static_cast<int64_t>(p.num_q_heads) * p.num_queries;
  const float* ws = static_cast<const float*>(p.workspace);
  float M = kNegInf;
  for (int s = 0; s < S; ++s) M = fmaxf(M, ws[(s * rows + row) * (2 * D + 2) + 2 * D]);
  float L = 0.0f, Ae = 0.0f, Ad = 0.0f;
  const bool dense = p.num_dense > 0;
  if (M != kNegInf) {
    for (int s = 0; s < S; ++s) {
      const float* w = ws + (s * rows + row) * (2 * D + 2);
      const float ms = w[2 * D];
      if (ms == kNegInf) continue;
      const float f = FastExp2(ms - M);
      L = fmaf(w[2 * D + 1], f, L);
      Ae = fmaf(w[i], f, Ae);
      if (dense) Ad = fmaf(w[D + i], f, Ad);
    }
  }
  const float inv = L > 0.0f ? 1.0f / L : 0.0f;
  p.a_eig[row * D + i] = Ae * inv;
  if (p.a_dense) p.a_dense[row * D + i] = Ad * inv;
}

}  // namespace sq_attend_detail
}  // namespace kvstream
