// K2 sq_attend kernel body (semantics and shapes: sq_attend.h; spec §4.4, §7).
// LaunchSqAttend runs it for Tq > 1 (prefill chunks); Tq == 1 runs the leaner
// DecodeKernel (sq_attend_decode.cuh), LaunchSqAttendLegacy this one for any Tq.
//
// Mapping: grid (Hkv, row tiles, S). A CTA serves kR = 4 query rows (hq, t)
// of one KV head (row rr = t * G + g, so decode's G heads share one CTA and
// every record is read once per tile) over split s's keys; the split is cut
// into 4 contiguous warp ranges (multiples of 32 keys), each walked in chunks
// of kChunk = 32 * kNk keys.
//
// Why this shape: the kernel is bound by shared-memory traffic into registers
// (~128 B per cycle per SM), not by DRAM. Every per-key lookup of a unit
// centroid is unavoidable, so the design cuts everything else that goes
// through shared memory per key:
//   - K phase, lane = kNk = 4 keys: the warp-uniform field descriptor and the
//     float4 of scaled query rows are loaded once per field and serve 4 keys
//     (the old one-key-per-lane loop paid a 16-byte broadcast per key-field);
//   - V phase, lane = 8 consecutive value dims of one of 32 / (D / 8) tokens
//     processed side by side, so one float4 of probabilities per token serves
//     8 dims (was 4) and two tokens (D 128) share each warp load;
//   - K and V tiles are single-buffered but prefetched a phase ahead (the next
//     chunk's K records land during this chunk's V phase, its V records during
//     the next K phase), which halves the tile footprint for more CTAs per SM.
// Per chunk a warp
//   1. has the chunk's K and V records copied (4-byte cp.async, records are
//      only word-aligned) to per-warp shared tiles (odd word stride: lane-per-
//      key reads are bank-conflict free);
//   2. K phase, lane = keys lane + 32 k (k < kNk): walks the D fields in order
//      (a field may straddle two words: funnel shift), looks the unit centroid
//      up in shared memory and accumulates kR scores against q'_i * s_i *
//      scale * log2(e); dense keys dot the raw q; QJL adds r_norm * sum_m +-sk_m;
//   3. online softmax in log2 units per row (m, lane-partial l, acc rescaled);
//   4. V phase: acc += p * U[code]; dense keys accumulate raw v into A_dense.
// Warps merge through shared memory; s_i of V is applied once at the end. With
// S > 1 the CTA writes (A * 2^-M, M, L) per row to the workspace and
// MergeKernel combines the splits. Summation order differs from the twin's
// (fp32 per split and warp, then merged), the terms are the same.
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
constexpr int kNk = 4;                // keys per lane in the K phase
constexpr int kChunk = 32 * kNk;      // keys per warp chunk
constexpr int kVd = 8;                // value dims per lane in the V phase (<= 4 fields per 32-bit word pair)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kSqrtHalfPi = 1.2533141373155003f;
constexpr float kNegInf = -__builtin_huge_valf();

struct Args {
  SqAttendParams p;
  int group, rows;  // G, G * Tq
  int wkp, wvp;              // tile strides in words (odd, >= W + 1)
  int64_t dstride;           // dense row stride (elements)
  float scale_log2;          // scale * log2(e)
  int kvec = 1, vvec = 1;    // DecodeKernel only: words per cp.async (1 or 2) of K / V records
};

inline int TileStride(int words) { return (words % 2 == 0) ? words + 1 : words + 2; }

// Floats of dynamic shared memory (see the layout in AttendKernel).
inline size_t SmemFloats(int D, int wkp, int wvp) {
  const size_t fixed = 12 * static_cast<size_t>(D) + kSqCentroidFloats + 2 + D;  // 2: pad to x4
  const size_t tiles = kWarps * (4 * kChunk + kChunk * (static_cast<size_t>(wkp) + wvp));
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
// 4-byte asynchronous global -> shared copy (sm_80+), its commit and waits.
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(gmem) : "memory");
}
__device__ __forceinline__ void CpAsyncCommitGroup() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void CpAsyncWaitGroup1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

__device__ __forceinline__ void Set(float4& v, int r, float x) {
  if (r == 0) v.x = x; else if (r == 1) v.y = x; else if (r == 2) v.z = x; else v.w = x;
}
__device__ __forceinline__ float Get(const float4& v, int r) {
  return r == 0 ? v.x : r == 1 ? v.y : r == 2 ? v.z : v.w;
}

// Copies the records of keys [j0, j0 + nc) (nc <= kChunk) of head h into a
// tile of stride `wp` words. Lane walks words lane, lane + 32, ... of the
// chunk; (tok, wd) advance incrementally (no division per word).
__device__ __forceinline__ void IssueTile(uint32_t* tile, int wp, const uint32_t* recs, int W, int64_t row_words,
                                          int j0, int nc, int tok, int wd, int dtok, int dwd) {
  const uint32_t* g = recs + static_cast<int64_t>(j0) * row_words;
  for (; tok < nc;) {
    CpAsync4(tile + tok * wp + wd, g + static_cast<int64_t>(tok) * row_words + wd);
    tok += dtok, wd += dwd;
    if (wd >= W) wd -= W, ++tok;
  }
}

// Epilogue shared by AttendKernel and DecodeKernel: merges the warps' online-
// softmax states and writes the CTA's rows. On entry each warp holds, per row
// r of the tile, its max m[r] (warp-uniform), a lane-partial sum lsum[r] and
// accumulators acc_e / acc_d of dims [c0, c0 + kVd) over the tokens of lane
// sub (lanes of the same dims, lane % kLpt, hold partial sums over disjoint
// tokens). `region` is the merge area, which aliases the warp tiles: every
// cp.async must have landed (CpAsyncWaitAll) before the call. The rows are
// written as the normalised output (S == 1) or as the split's partial
// (A * 2^-M, M, L) to the workspace for MergeKernel; s_i of V is applied here.
// The kernels differ only in where row rr of the tile goes:
//   out_row(rr) -> int64_t output row (hq * Tq + t) of tile row rr,
//   ws_row(row) -> int64_t workspace row (split * rows per split + row).
// Forced inline: the accumulators must stay in registers.
template <int D, bool kDense, class OutRow, class WsRow>
__device__ __forceinline__ void MergeWarpsAndStore(const Args& a, float* region, float (&m)[kR], float (&lsum)[kR],
                                                   float (&acc_e)[kVd][kR], float (&acc_d)[kVd][kR], int tid,
                                                   int lane, int warp, int sub, int c0, int h, int rr0, int Tk,
                                                   OutRow out_row, WsRow ws_row) {
  constexpr int kLpt = D / kVd;  // V phase: lanes per token
  const SqAttendParams& p = a.p;
#pragma unroll
  for (int o = kLpt; o < 32; o <<= 1)
#pragma unroll
    for (int e = 0; e < kVd; ++e)
#pragma unroll
      for (int r = 0; r < kR; ++r) {
        acc_e[e][r] += __shfl_xor_sync(0xffffffffu, acc_e[e][r], o);
        if (kDense) acc_d[e][r] += __shfl_xor_sync(0xffffffffu, acc_d[e][r], o);
      }
#pragma unroll
  for (int r = 0; r < kR; ++r) lsum[r] = WarpSum(lsum[r]);
  __syncthreads();
  float* wm = region;                    // [kWarps][kR]
  float* wl = wm + kWarps * kR;          // [kWarps][kR]
  float* we_ = wl + kWarps * kR;         // [kWarps][kR][D]
  float* wd = we_ + kWarps * kR * D;     // [kWarps][kR][D]
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    if (lane == r) wm[warp * kR + r] = m[r], wl[warp * kR + r] = lsum[r];
    if (sub == 0) {
#pragma unroll
      for (int e = 0; e < kVd; ++e) {
        we_[(warp * kR + r) * D + c0 + e] = acc_e[e][r];
        if (kDense) wd[(warp * kR + r) * D + c0 + e] = acc_d[e][r];
      }
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
        Ae = fmaf(we_[(w * kR + r) * D + i], f, Ae);
        if (kDense) Ad = fmaf(wd[(w * kR + r) * D + i], f, Ad);
      }
    }
    const float vs = Tk > 0 ? p.v_plan.scale[h * D + i] : 0.0f;
    const int64_t row = out_row(rr);
    if (p.num_splits == 1) {
      const float inv = L > 0.0f ? 1.0f / L : 0.0f;
      p.a_eig[row * D + i] = Ae * vs * inv;
      if (p.a_dense) p.a_dense[row * D + i] = Ad * inv;
    } else {
      float* ws = static_cast<float*>(p.workspace) + ws_row(row) * (2 * D + 2);
      ws[i] = Ae * vs;
      if (kDense) ws[D + i] = Ad;
      if (i == 0) ws[2 * D] = M, ws[2 * D + 1] = L;
    }
  }
}

// kDense = false (Td == 0) compiles the dense-segment paths and accumulators out;
// the dense variants (prefill chunks) carry 32 more accumulators and run 2 CTAs
// per SM rather than spill.
template <int D, class TD, bool kDense>
__global__ void __launch_bounds__(kThreads, kDense ? 2 : kSqAttendCtasPerSm) AttendKernel(Args a) {
  constexpr int kLpt = D / kVd;      // V phase: lanes per token
  constexpr int kTps = 32 / kLpt;    // V phase: tokens side by side
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
  const int Hkv = p.num_kv_heads, G = a.group, Tq = p.num_queries, Tk = SqLiveKeys(p);
  const bool qjl = p.q_sketch != nullptr && Tk > 0;
  const int de = qjl ? p.k_plan.d_eff[h] : 0;
  const int de_used = qjl ? min(de, 32 * p.sign_words) : 0;

  // ---- setup: tables, K field descriptors, scaled query rows ----
  // kdesc: bits 0-8 centroid base, 9-16 code mask, 17-21 shift, 22-27 word.
  for (int i = tid; i < kSqCentroidFloats; i += kThreads) ctab[i] = p.tables[i];
  for (int i = tid; i < D; i += kThreads) {
    float s = 0.0f;
    if (Tk > 0) {
      const uint32_t w = p.k_plan.width[h * D + i], off = p.k_plan.bit_offset[h * D + i];
      kdesc[i] = static_cast<uint32_t>(SqCentroidOffset(w)) | (((1u << w) - 1u) << 9) | ((off & 31u) << 17) |
                 ((off >> 5) << 22);
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
  // This lane's value fields: dims [c0, c0 + kVd) of tokens sub, sub + kTps, ...
  // Fields c0..c0+3 and c0+4..c0+7 each span <= 32 bits (widths <= 8), read
  // as one funnel shift from word va/vb at shift vsa/vsb.
  const int sub = lane / kLpt, c0 = (lane % kLpt) * kVd;
  int va = 0, vsa = 0, vb = 0, vsb = 0;
  uint32_t vpos[kVd], vmask[kVd], vtoff[kVd];
#pragma unroll
  for (int e = 0; e < kVd; ++e) vpos[e] = 0, vmask[e] = 1, vtoff[e] = 0;
  if (Tk > 0) {
    const int offa = p.v_plan.bit_offset[h * D + c0], offb = p.v_plan.bit_offset[h * D + c0 + kVd / 2];
    va = offa >> 5, vsa = offa & 31, vb = offb >> 5, vsb = offb & 31;
#pragma unroll
    for (int e = 0; e < kVd; ++e) {
      const int w = p.v_plan.width[h * D + c0 + e];
      vpos[e] = p.v_plan.bit_offset[h * D + c0 + e] - (e < kVd / 2 ? offa : offb);
      vmask[e] = (1u << w) - 1u, vtoff[e] = SqCentroidOffset(w);
    }
  }
  __syncthreads();

  // Per warp: ptile [kChunk] float4 | ktile [kChunk][wkp] | vtile [kChunk][wvp].
  float* wreg = region + warp * (4 * kChunk + kChunk * (a.wkp + a.wvp));
  float4* ptile = reinterpret_cast<float4*>(wreg);
  uint32_t* ktile = reinterpret_cast<uint32_t*>(wreg + 4 * kChunk);
  uint32_t* vtile = ktile + kChunk * a.wkp;
  // Record strides by the capacity, as the launcher sized the tiles and chose the copy width.
  const int Wk = p.num_keys > 0 ? p.k_plan.words : 1, Wv = p.num_keys > 0 ? p.v_plan.words : 1;
  const int64_t krow = static_cast<int64_t>(Hkv) * Wk, vrow = static_cast<int64_t>(Hkv) * Wv;
  const uint32_t* kg = p.k_records + static_cast<int64_t>(h) * Wk;
  const uint32_t* vg = p.v_records + static_cast<int64_t>(h) * Wv;
  const int ktok0 = lane / Wk, kwd0 = lane % Wk, kdt = 32 / Wk, kdw = 32 % Wk;
  const int vtok0 = lane / Wv, vwd0 = lane % Wv, vdt = 32 / Wv, vdw = 32 % Wv;
  const TD* dk = static_cast<const TD*>(p.dense_k);
  const TD* dv = static_cast<const TD*>(p.dense_v);

  float m[kR], lsum[kR], acc_e[kVd][kR], acc_d[kVd][kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    m[r] = kNegInf, lsum[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < kVd; ++e) acc_e[e][r] = 0.0f, acc_d[e][r] = 0.0f;
  }
  // This warp's contiguous share of the split (multiples of 32 keys).
  int wb, we;
  {
    int kb, ke;
    SqAttendSplitRange(Tk + p.num_dense, p.num_splits, split, &kb, &ke);
    const int per = ((ke - kb + kWarps - 1) / kWarps + 31) / 32 * 32;
    wb = min(ke, kb + warp * per), we = min(ke, wb + per);
  }
  auto ncomp = [&](int j0) { return max(0, min(Tk - j0, min(kChunk, we - j0))); };

  // Pipeline (cp.async groups in order): K_c, V_c in flight at the loop top;
  // K_{c+1} is issued after the K phase of c, V_{c+1} after its V phase.
  if (wb < we) {
    IssueTile(ktile, a.wkp, kg, Wk, krow, wb, ncomp(wb), ktok0, kwd0, kdt, kdw);
    CpAsyncCommitGroup();
    IssueTile(vtile, a.wvp, vg, Wv, vrow, wb, ncomp(wb), vtok0, vwd0, vdt, vdw);
    CpAsyncCommitGroup();
  }
  for (int j0 = wb; j0 < we; j0 += kChunk) {
    const int nk = min(kChunk, we - j0);
    const int nc = ncomp(j0);  // compressed keys come first
    const bool more = j0 + kChunk < we;
    CpAsyncWaitGroup1();  // K_c landed (V_c may still be in flight)
    __syncwarp();
    // 2. K phase: lane = keys t = lane + 32 k of the chunk
    float sc[kNk][kR];
    int pos[kNk];
#pragma unroll
    for (int k = 0; k < kNk; ++k) {
      pos[k] = INT_MAX;
#pragma unroll
      for (int r = 0; r < kR; ++r) sc[k][r] = 0.0f;
    }
    if (nc > 0) {
      // Rows of keys beyond nc hold stale words: any bits are valid codes, and
      // those scores are masked below.
      const uint32_t* rec = ktile + lane * a.wkp;
      uint32_t lo[kNk], hi[kNk];
      int cur = 0;
#pragma unroll
      for (int k = 0; k < kNk; ++k) lo[k] = rec[k * 32 * a.wkp], hi[k] = rec[k * 32 * a.wkp + 1];
#pragma unroll 4
      for (int i = 0; i < D; ++i) {
        const uint32_t d = kdesc[i];
        const int wd = static_cast<int>(d >> 22);
        if (wd != cur) {  // warp-uniform: the plan is per head
#pragma unroll
          for (int k = 0; k < kNk; ++k) lo[k] = rec[k * 32 * a.wkp + wd], hi[k] = rec[k * 32 * a.wkp + wd + 1];
          cur = wd;
        }
        const uint32_t sh = (d >> 17) & 31u, mask = (d >> 9) & 255u, base = d & 511u;
        const float4 q = qs4[i];
#pragma unroll
        for (int k = 0; k < kNk; ++k) {
          const float u = ctab[base + (__funnelshift_r(lo[k], hi[k], sh) & mask)];
          sc[k][0] = fmaf(q.x, u, sc[k][0]), sc[k][1] = fmaf(q.y, u, sc[k][1]);
          sc[k][2] = fmaf(q.z, u, sc[k][2]), sc[k][3] = fmaf(q.w, u, sc[k][3]);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kNk; ++k) {
      const int t = lane + 32 * k, j = j0 + t;
      if (t < nc) {
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
          for (int r = 0; r < kR; ++r) sc[k][r] = fmaf(rn, c[r], sc[k][r]);
        }
        pos[k] = p.k_pos ? p.k_pos[j] : j;
      } else if (kDense && t < nk) {
        const TD* kr = dk + static_cast<int64_t>(j - Tk) * a.dstride + static_cast<int64_t>(h) * D;
#pragma unroll
        for (int r = 0; r < kR; ++r) sc[k][r] = 0.0f;  // the compressed loop scored a stale row here
#pragma unroll 8
        for (int i = 0; i < D; ++i) {
          const float x = ToF<TD>(kr[i]);
          const float4 q = qr4[i];
          sc[k][0] = fmaf(q.x, x, sc[k][0]), sc[k][1] = fmaf(q.y, x, sc[k][1]);
          sc[k][2] = fmaf(q.z, x, sc[k][2]), sc[k][3] = fmaf(q.w, x, sc[k][3]);
        }
        pos[k] = p.d_pos ? p.d_pos[j - Tk] : j;
      }
    }
    __syncwarp();  // every lane is done with ktile: prefetch the next chunk's K
    if (more) IssueTile(ktile, a.wkp, kg, Wk, krow, j0 + kChunk, ncomp(j0 + kChunk), ktok0, kwd0, kdt, kdw);
    CpAsyncCommitGroup();
    // 3. mask and online softmax (log2 units); l stays lane-partial until the end
    float4 pv[kNk];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      float mx = kNegInf;
#pragma unroll
      for (int k = 0; k < kNk; ++k) {
        if (lane + 32 * k >= nk || pos[k] > qpos[r]) sc[k][r] = kNegInf;
        mx = fmaxf(mx, sc[k][r]);
      }
      const float mnew = fmaxf(m[r], WarpMax(mx));
      const float alpha = m[r] == kNegInf ? 0.0f : FastExp2(m[r] - mnew);
      float ps = 0.0f;
#pragma unroll
      for (int k = 0; k < kNk; ++k) {
        const float pr = sc[k][r] == kNegInf ? 0.0f : FastExp2(sc[k][r] - mnew);
        ps += pr;
        Set(pv[k], r, pr);
      }
      lsum[r] = fmaf(lsum[r], alpha, ps);
      m[r] = mnew;
#pragma unroll
      for (int e = 0; e < kVd; ++e) acc_e[e][r] *= alpha, acc_d[e][r] *= alpha;
    }
#pragma unroll
    for (int k = 0; k < kNk; ++k) ptile[lane + 32 * k] = pv[k];
    CpAsyncWaitGroup1();  // V_c landed (K_{c+1} may still be in flight)
    __syncwarp();
    // 4. V phase: lane = kVd consecutive value dims of every kTps-th token
    for (int tok = sub; tok < nc; tok += kTps) {
      const float4 pt = ptile[tok];
      if (pt.x == 0.0f && pt.y == 0.0f && pt.z == 0.0f && pt.w == 0.0f) continue;  // masked key
      const uint32_t* rec = vtile + tok * a.wvp;
      const uint32_t xa = __funnelshift_r(rec[va], rec[va + 1], vsa);
      const uint32_t xb = __funnelshift_r(rec[vb], rec[vb + 1], vsb);
#pragma unroll
      for (int e = 0; e < kVd; ++e) {
        const float u = ctab[vtoff[e] + (((e < kVd / 2 ? xa : xb) >> vpos[e]) & vmask[e])];
        acc_e[e][0] = fmaf(pt.x, u, acc_e[e][0]), acc_e[e][1] = fmaf(pt.y, u, acc_e[e][1]);
        acc_e[e][2] = fmaf(pt.z, u, acc_e[e][2]), acc_e[e][3] = fmaf(pt.w, u, acc_e[e][3]);
      }
    }
    if (kDense) {
      for (int tok = nc + sub; tok < nk; tok += kTps) {
        const float4 pt = ptile[tok];
        if (pt.x == 0.0f && pt.y == 0.0f && pt.z == 0.0f && pt.w == 0.0f) continue;
        const TD* vr = dv + static_cast<int64_t>(j0 + tok - Tk) * a.dstride + static_cast<int64_t>(h) * D + c0;
#pragma unroll
        for (int e = 0; e < kVd; ++e) {
          const float x = ToF<TD>(vr[e]);
          acc_d[e][0] = fmaf(pt.x, x, acc_d[e][0]), acc_d[e][1] = fmaf(pt.y, x, acc_d[e][1]);
          acc_d[e][2] = fmaf(pt.z, x, acc_d[e][2]), acc_d[e][3] = fmaf(pt.w, x, acc_d[e][3]);
        }
      }
    }
    __syncwarp();  // every lane is done with vtile and ptile
    if (more) IssueTile(vtile, a.wvp, vg, Wv, vrow, j0 + kChunk, ncomp(j0 + kChunk), vtok0, vwd0, vdt, vdw);
    CpAsyncCommitGroup();
  }
  CpAsyncWaitAll();  // only empty groups remain; the merge area aliases the tiles

  // ---- merge the warps (the merge area aliases the tiles) ----
  MergeWarpsAndStore<D, kDense>(
      a, region, m, lsum, acc_e, acc_d, tid, lane, warp, sub, c0, h, rr0, Tk,
      [&](int rr) {
        const int hq = h * G + rr % G, t = rr / G;
        return static_cast<int64_t>(hq) * Tq + t;
      },
      [&](int64_t row) { return (static_cast<int64_t>(split) * p.num_q_heads * Tq) + row; });
}

// Combines S partials per row: one CTA of D threads per (hq, t).
template <int D>
__global__ void __launch_bounds__(D) MergeKernel(SqAttendParams p) {
  const int64_t row = blockIdx.x;
  const int i = threadIdx.x, S = p.num_splits;
  const int64_t rows = static_cast<int64_t>(p.num_q_heads) * p.num_queries;
  const float* ws = static_cast<const float*>(p.workspace);
  float M = kNegInf;
#pragma unroll 8
  for (int s = 0; s < S; ++s) M = fmaxf(M, ws[(s * rows + row) * (2 * D + 2) + 2 * D]);
  float L = 0.0f, Ae = 0.0f, Ad = 0.0f;
  const bool dense = p.num_dense > 0;
  if (M != kNegInf) {
    // Every load is unconditional (an empty split weighs 0) so an unrolled
    // batch of splits is one L2 round trip. NOTE(kvstream): a `continue` on
    // the split's max put each split's loads behind its own branch, one round
    // trip per split (the dense merge measured ~5 us of this at S = 33).
#pragma unroll 8
    for (int s = 0; s < S; ++s) {
      const float* w = ws + (s * rows + row) * (2 * D + 2);
      const float ms = w[2 * D], ls = w[2 * D + 1], e = w[i], d = dense ? w[D + i] : 0.0f;
      const float f = ms == kNegInf ? 0.0f : FastExp2(ms - M);
      L = fmaf(ls, f, L);
      Ae = fmaf(e, f, Ae);
      Ad = fmaf(d, f, Ad);
    }
  }
  const float inv = L > 0.0f ? 1.0f / L : 0.0f;
  p.a_eig[row * D + i] = Ae * inv;
  if (p.a_dense) p.a_dense[row * D + i] = Ad * inv;
}

}  // namespace sq_attend_detail
}  // namespace kvstream
