// K2 sq_attend, decode kernel (Tq == 1): same semantics, grid (Hkv, row tiles,
// S), split ranges, warp ranges, workspace and MergeKernel as AttendKernel
// (sq_attend_kernel.cuh, which still serves Tq > 1 and the legacy A/B).
//
// Why a second kernel: AttendKernel spends ~3400 issued instructions per
// (key, KV head) at D 128 (SASS: K field loop ~13.7 per key-field, V loop
// ~12.3 per key-field), against 1024 FFMAs that are the real work (4 rows x
// 128 dims x K and V). It is issue-bound, not DRAM-bound. This kernel keeps
// the same data flow (lane-per-key K scoring over 4 rows, lane-per-8-dims V
// accumulation, cp.async tiles a phase ahead) and cuts the decode to
//   K: SHF.W + LOP3 + LDS + 4 FFMA per key-field (was ~13.7), V: SHF + LOP3 +
//   LEA + LDS + 4 FFMA (was ~12.3), ~2200 per key instead of ~3400,
// through three changes:
//   1. K field descriptors are precomputed per CTA as uint4 {shift, mask << 2,
//      4 * 2^w} so one funnel shift and one LOP3 give the byte offset of the
//      centroid in a table laid out with U_w at [2^w, 2^(w+1)) (static shared
//      memory, so the LDS takes the table base as an immediate). The funnel
//      shift starts 2 bits before the field (the code lands at bits 2..), so
//      no separate scale-by-4 is needed.
//   2. Fields are walked per 32-bit word pair: group g holds the fields whose
//      (offset - 2) lies in word g - 1, so the record words advance once per
//      group (prefetched one group ahead) instead of a reload branch per field.
//   3. The V loop drops the per-token "all four probabilities are zero" test
//      (a masked key adds 0 * U, U finite; decode rarely masks) and is unrolled
//      over two tokens per lane for ILP.
// Sums are the same terms in fp32 as AttendKernel (order within a key's field
// sum unchanged: ascending dims), so the twin bounds hold unchanged.
#pragma once

#include "kernels/spectral_quant/sq_attend_kernel.cuh"

namespace kvstream {
namespace sq_attend_detail {

// Unit centroids re-laid for the decode kernel: U_w at [2^w, 2^(w+1)), so
// index = 2^w | code (dtab[0..1] unused).
constexpr int kDecTabFloats = 512;

// Dynamic shared memory (floats) of DecodeKernel: kfd [D] uint4 | qs4 | sk4 |
// qr4 (dense only) [D] float4 | gend [kSqMaxRecordWords + 4] | per-warp tiles
// (aliased by the merge area), as AttendKernel minus its centroid table (static
// here). At D 128 with the default records (12 + 14 words) that is 70.2 KB +
// 2 KB static: 3 CTAs per SM fit in 228 KB (with qr4 always present they would
// not).
inline size_t DecodeSmemFloats(int D, int wkp, int wvp, bool dense) {
  const size_t fixed = (dense ? 16 : 12) * static_cast<size_t>(D) + kSqMaxRecordWords + 4;
  const size_t tiles = kWarps * (4 * kChunk + kChunk * (static_cast<size_t>(wkp) + wvp));
  const size_t merge = kWarps * (2 * kR * static_cast<size_t>(D) + 2 * kR);
  return fixed + (tiles > merge ? tiles : merge) + 4;  // 4: slack for the last row's pad-word read
}

__device__ __forceinline__ float DecTab(const float* tab, uint32_t byte_off) {
  return *reinterpret_cast<const float*>(reinterpret_cast<const char*>(tab) + byte_off);
}
// fp32 load from a 32-bit shared-window address: the V lookups precompute the
// absolute address of each field's table (one LEA per lookup, no base add).
__device__ __forceinline__ float LdsF32(uint32_t addr) {
  float v;
  asm("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr));
  return v;
}

// Tile row stride (words) for records of W words copied `vec` words at a
// time: vec 2 needs an even stride, and W + (0 or 2) = 2 mod 4 keeps the K
// phase's lane-per-row reads at most 2-way bank conflicted; vec 1 keeps the
// odd (conflict-free) TileStride. Rows are not padded for vec 2: the pad word
// a row's last group reads is the next row's first (any bits are valid and
// unused), DecodeSmemFloats leaves slack after the last tile.
inline int DecodeTileStride(int words, int vec) {
  if (vec == 1) return TileStride(words);
  return words % 4 == 2 ? words : words + 2;
}

// Per-lane plan of a coalesced tile copy: lane copies unit u (vec words) of
// tokens t0, t0 + tpi, ... (tpi = 32 / units whole records per warp pass;
// lanes beyond tpi * units idle). One add per pointer per copy, no division;
// the old word-by-word walk cost ~28 instructions per 4-byte copy (~730 per
// key at D 128). units <= 32 always holds for vec 2; for vec 1 and W = 33 the
// launcher sets vec 1 and the fallback IssueTile walk runs.
struct TileCopy {
  int t0, u, tpi;
  __device__ void Init(int words, int vec, int lane) {
    const int units = words / vec;
    tpi = units <= 32 ? 32 / units : 0;
    t0 = units <= 32 ? lane / units : 0, u = units <= 32 ? (lane % units) * vec : 0;
  }
};

template <int kVec>
__device__ __forceinline__ void CpAsyncN(uint32_t* smem, const uint32_t* gmem) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(dst), "l"(gmem), "n"(kVec * 4) : "memory");
}

// Copies the records of keys [j0, j0 + nc) into a tile of stride wp words.
__device__ __forceinline__ void IssueTileDec(uint32_t* tile, int wp, const uint32_t* recs, int W, int64_t row_words,
                                             int j0, int nc, int vec, const TileCopy& c, int lane) {
  if (c.tpi == 0) {  // records wider than 32 units: the generic word walk
    IssueTile(tile, wp, recs, W, row_words, j0, nc, lane / W, lane % W, 32 / W, 32 % W);
    return;
  }
  if (c.t0 >= c.tpi) return;
  const uint32_t* g = recs + static_cast<int64_t>(j0 + c.t0) * row_words + c.u;
  uint32_t* s = tile + c.t0 * wp + c.u;
  const int64_t gstep = static_cast<int64_t>(c.tpi) * row_words;
  const int sstep = c.tpi * wp;
  if (vec == 2) {
#pragma unroll 4
    for (int t = c.t0; t < nc; t += c.tpi, g += gstep, s += sstep) CpAsyncN<2>(s, g);
  } else {
#pragma unroll 4
    for (int t = c.t0; t < nc; t += c.tpi, g += gstep, s += sstep) CpAsyncN<1>(s, g);
  }
}

template <int D, class TD, bool kDense>
__global__ void __launch_bounds__(kThreads, kDense ? 2 : kSqAttendCtasPerSm) DecodeKernel(Args a) {
  constexpr int kLpt = D / kVd;      // V phase: lanes per token
  constexpr int kTps = 32 / kLpt;    // V phase: tokens side by side
  const SqAttendParams& p = a.p;
  __shared__ float dtab[kDecTabFloats];
  extern __shared__ float4 smem4[];
  uint4* kfd = reinterpret_cast<uint4*>(smem4);
  float4* qs4 = smem4 + D;
  float4* sk4 = qs4 + D;
  float4* qr4 = sk4 + D;  // kDense only
  int* gend = reinterpret_cast<int*>(kDense ? qr4 + D : qr4);  // [W + 1]: end field of word-pair group g
  float* region = reinterpret_cast<float*>(gend + kSqMaxRecordWords + 4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int h = blockIdx.x, rr0 = blockIdx.y * kR, split = blockIdx.z;
  const int Hkv = p.num_kv_heads, G = a.group, Tk = SqLiveKeys(p);
  const bool qjl = p.q_sketch != nullptr && Tk > 0;
  const int de = qjl ? p.k_plan.d_eff[h] : 0;
  const int de_used = qjl ? min(de, 32 * p.sign_words) : 0;
  // Record strides by the capacity, as the launcher sized the tiles and chose the copy width.
  const int Wk = p.num_keys > 0 ? p.k_plan.words : 1, Wv = p.num_keys > 0 ? p.v_plan.words : 1;

  // ---- setup: table, K field descriptors and groups, scaled query rows ----
  for (int i = tid; i < kDecTabFloats; i += kThreads) dtab[i] = i >= 2 ? p.tables[i - 2] : 0.0f;
  for (int i = tid; i < D; i += kThreads) {
    float s = 0.0f;
    uint4 d = make_uint4(0u, 0u, 4u, 0u);
    if (Tk > 0) {
      const uint32_t w = p.k_plan.width[h * D + i];
      const int off = p.k_plan.bit_offset[h * D + i];
      d = make_uint4(static_cast<uint32_t>((off - 2) & 31), ((1u << w) - 1u) << 2, 4u << w, 0u);
      s = p.k_plan.scale[h * D + i];
      // Group g in [0, Wk] holds the fields with floor((off - 2) / 32) == g - 1,
      // read from the word pair (w[g - 1], w[g]) with w[-1] = 0. Offsets ascend
      // (back-to-back packing, sq_layout.h), so groups are contiguous field
      // ranges: the last field of each run of groups writes their ends.
      const int gi = (off + 30) >> 5;
      const int gn = i + 1 < D ? (static_cast<int>(p.k_plan.bit_offset[h * D + i + 1]) + 30) >> 5 : Wk + 1;
      for (int g = gi; g < gn; ++g) gend[g] = i + 1;
    }
    float4 q = make_float4(0.f, 0.f, 0.f, 0.f), qr = q, sk = q;
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const int rr = rr0 + r;  // Tq == 1: row rr is query head h * G + rr
      if (rr >= a.rows) continue;
      const int64_t row = static_cast<int64_t>(h * G + rr) * D;
      Set(q, r, p.q_rot[row + i] * s * a.scale_log2);
      if (kDense) Set(qr, r, p.q_raw[row + i] * a.scale_log2);
      if (qjl && i < de_used) Set(sk, r, p.q_sketch[row + i] * a.scale_log2 * (kSqrtHalfPi / de));
    }
    kfd[i] = d, qs4[i] = q, sk4[i] = sk;
    if (kDense) qr4[i] = qr;
  }
  const int qpos = rr0 < a.rows ? (p.q_pos ? p.q_pos[0] : INT_MAX) : INT_MIN;
  // This lane's value fields: dims [c0, c0 + kVd) of tokens sub, sub + kTps, ...
  // (two 4-field windows of <= 32 bits, as AttendKernel); vbase = shared
  // address of U_w in dtab.
  const int sub = lane / kLpt, c0 = (lane % kLpt) * kVd;
  const uint32_t dtab_addr = static_cast<uint32_t>(__cvta_generic_to_shared(dtab));
  int va = 0, vsa = 0, vb = 0, vsb = 0;
  uint32_t vpos[kVd], vmask[kVd], vbase[kVd];
#pragma unroll
  for (int e = 0; e < kVd; ++e) vpos[e] = 0, vmask[e] = 1, vbase[e] = dtab_addr + 8u;
  if (Tk > 0) {
    const int offa = p.v_plan.bit_offset[h * D + c0], offb = p.v_plan.bit_offset[h * D + c0 + kVd / 2];
    va = offa >> 5, vsa = offa & 31, vb = offb >> 5, vsb = offb & 31;
#pragma unroll
    for (int e = 0; e < kVd; ++e) {
      const int w = p.v_plan.width[h * D + c0 + e];
      vpos[e] = p.v_plan.bit_offset[h * D + c0 + e] - (e < kVd / 2 ? offa : offb);
      vmask[e] = (1u << w) - 1u, vbase[e] = dtab_addr + (4u << w);
    }
  }
  __syncthreads();

  float* wreg = region + warp * (4 * kChunk + kChunk * (a.wkp + a.wvp));
  float4* ptile = reinterpret_cast<float4*>(wreg);
  uint32_t* ktile = reinterpret_cast<uint32_t*>(wreg + 4 * kChunk);
  uint32_t* vtile = ktile + kChunk * a.wkp;
  const int64_t krow = static_cast<int64_t>(Hkv) * Wk, vrow = static_cast<int64_t>(Hkv) * Wv;
  const uint32_t* kg = p.k_records + static_cast<int64_t>(h) * Wk;
  const uint32_t* vg = p.v_records + static_cast<int64_t>(h) * Wv;
  TileCopy kcp, vcp;
  kcp.Init(Wk, a.kvec, lane), vcp.Init(Wv, a.vvec, lane);
  const TD* dk = static_cast<const TD*>(p.dense_k);
  const TD* dv = static_cast<const TD*>(p.dense_v);

  float m[kR], lsum[kR], acc_e[kVd][kR], acc_d[kVd][kR];
#pragma unroll
  for (int r = 0; r < kR; ++r) {
    m[r] = kNegInf, lsum[r] = 0.0f;
#pragma unroll
    for (int e = 0; e < kVd; ++e) acc_e[e][r] = 0.0f, acc_d[e][r] = 0.0f;
  }
  int wb, we;
  {
    int kb, ke;
    SqAttendSplitRange(Tk + p.num_dense, p.num_splits, split, &kb, &ke);
    const int per = ((ke - kb + kWarps - 1) / kWarps + 31) / 32 * 32;
    wb = min(ke, kb + warp * per), we = min(ke, wb + per);
  }
  auto ncomp = [&](int j0) { return max(0, min(Tk - j0, min(kChunk, we - j0))); };

  // Pipeline as AttendKernel: K_c, V_c in flight at the loop top; K_{c+1} is
  // issued after the K phase of c, V_{c+1} after its V phase.
  if (wb < we) {
    IssueTileDec(ktile, a.wkp, kg, Wk, krow, wb, ncomp(wb), a.kvec, kcp, lane);
    CpAsyncCommitGroup();
    IssueTileDec(vtile, a.wvp, vg, Wv, vrow, wb, ncomp(wb), a.vvec, vcp, lane);
    CpAsyncCommitGroup();
  }
  for (int j0 = wb; j0 < we; j0 += kChunk) {
    const int nk = min(kChunk, we - j0);
    const int nc = ncomp(j0);
    const bool more = j0 + kChunk < we;
    // Positions, r_norm and the first sign word are global loads: issue them
    // before the field walk so their latency hides behind it.
    int pos[kNk];
    float rn[kNk];
    uint32_t sg0[kNk];
#pragma unroll
    for (int k = 0; k < kNk; ++k) {
      const int t = lane + 32 * k, j = j0 + t;
      pos[k] = INT_MAX, rn[k] = 0.0f, sg0[k] = 0u;
      if (t < nc) {
        pos[k] = p.k_pos ? p.k_pos[j] : j;
        if (qjl) {
          rn[k] = __half2float(__ushort_as_half(p.k_rnorm[static_cast<int64_t>(j) * Hkv + h]));
          sg0[k] = p.k_signs[(static_cast<int64_t>(j) * Hkv + h) * p.sign_words];
        }
      } else if (kDense && t < nk) {
        pos[k] = p.d_pos ? p.d_pos[j - Tk] : j;
      }
    }
    CpAsyncWaitGroup1();  // K_c landed (V_c may still be in flight)
    __syncwarp();
    // 2. K phase: lane = keys t = lane + 32 k of the chunk
    float sc[kNk][kR];
#pragma unroll
    for (int k = 0; k < kNk; ++k)
#pragma unroll
      for (int r = 0; r < kR; ++r) sc[k][r] = 0.0f;
    if (nc > 0) {
      // Rows of keys beyond nc hold stale words: any bits are valid codes, and
      // those scores are masked (or overwritten by the dense dot) below.
      const uint32_t* rec = ktile + lane * a.wkp;
      uint32_t lo[kNk], hi[kNk], nx[kNk];
#pragma unroll
      for (int k = 0; k < kNk; ++k) {
        lo[k] = 0u, hi[k] = rec[k * 32 * a.wkp], nx[k] = rec[k * 32 * a.wkp + 1];  // word 1: data or pad
      }
      int f = 0;
      for (int g = 0;; ++g) {
        const int fe = gend[g];
#pragma unroll 4
        for (; f < fe; ++f) {
          const uint4 d = kfd[f];
          const float4 q = qs4[f];
#pragma unroll
          for (int k = 0; k < kNk; ++k) {
            const float u = DecTab(dtab, (__funnelshift_r(lo[k], hi[k], d.x) & d.y) | d.z);
            sc[k][0] = fmaf(q.x, u, sc[k][0]), sc[k][1] = fmaf(q.y, u, sc[k][1]);
            sc[k][2] = fmaf(q.z, u, sc[k][2]), sc[k][3] = fmaf(q.w, u, sc[k][3]);
          }
        }
        if (g >= Wk) break;
        // Next pair (w[g], w[g + 1]); word Wk is the tile row's pad word.
        const int nw = min(g + 2, Wk);
#pragma unroll
        for (int k = 0; k < kNk; ++k) lo[k] = hi[k], hi[k] = nx[k], nx[k] = rec[k * 32 * a.wkp + nw];
      }
    }
#pragma unroll
    for (int k = 0; k < kNk; ++k) {
      const int t = lane + 32 * k, j = j0 + t;
      if (t < nc) {
        if (qjl) {
          const uint32_t* sg = p.k_signs + (static_cast<int64_t>(j) * Hkv + h) * p.sign_words;
          float c[kR] = {0.f, 0.f, 0.f, 0.f};
          uint32_t word = sg0[k];
          for (int mm = 0; mm < de_used; ++mm) {
            if ((mm & 31) == 0 && mm > 0) word = sg[mm >> 5];
            const float4 s = sk4[mm];
            const float sgn = ((word >> (mm & 31)) & 1u) ? 1.0f : -1.0f;
            c[0] = fmaf(sgn, s.x, c[0]), c[1] = fmaf(sgn, s.y, c[1]);
            c[2] = fmaf(sgn, s.z, c[2]), c[3] = fmaf(sgn, s.w, c[3]);
          }
#pragma unroll
          for (int r = 0; r < kR; ++r) sc[k][r] = fmaf(rn[k], c[r], sc[k][r]);
        }
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
      }
    }
    __syncwarp();  // every lane is done with ktile: prefetch the next chunk's K
    if (more) IssueTileDec(ktile, a.wkp, kg, Wk, krow, j0 + kChunk, ncomp(j0 + kChunk), a.kvec, kcp, lane);
    CpAsyncCommitGroup();
    // 3. mask and online softmax (log2 units); one query position, so the mask
    // is per key; l stays lane-partial until the end.
    float4 pv[kNk];
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      float mx = kNegInf;
#pragma unroll
      for (int k = 0; k < kNk; ++k) {
        if (lane + 32 * k >= nk || pos[k] > qpos) sc[k][r] = kNegInf;
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
    // 4. V phase: lane = kVd consecutive value dims of every kTps-th token.
    // Walking pointers (one add per token) instead of tok * wvp + va per load.
    const uint32_t* ra = vtile + sub * a.wvp + va;
    const uint32_t* rb = vtile + sub * a.wvp + vb;
    const int vstep = kTps * a.wvp;
#pragma unroll 2
    for (int tok = sub; tok < nc; tok += kTps, ra += vstep, rb += vstep) {
      const float4 pt = ptile[tok];
      const uint32_t xa = __funnelshift_r(ra[0], ra[1], vsa);
      const uint32_t xb = __funnelshift_r(rb[0], rb[1], vsb);
#pragma unroll
      for (int e = 0; e < kVd; ++e) {
        const uint32_t code = ((e < kVd / 2 ? xa : xb) >> vpos[e]) & vmask[e];
        const float u = LdsF32(vbase[e] + code * 4u);
        acc_e[e][0] = fmaf(pt.x, u, acc_e[e][0]), acc_e[e][1] = fmaf(pt.y, u, acc_e[e][1]);
        acc_e[e][2] = fmaf(pt.z, u, acc_e[e][2]), acc_e[e][3] = fmaf(pt.w, u, acc_e[e][3]);
      }
    }
    if (kDense) {
      for (int tok = nc + sub; tok < nk; tok += kTps) {
        const float4 pt = ptile[tok];
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
    if (more) IssueTileDec(vtile, a.wvp, vg, Wv, vrow, j0 + kChunk, ncomp(j0 + kChunk), a.vvec, vcp, lane);
    CpAsyncCommitGroup();
  }
  CpAsyncWaitAll();  // only empty groups remain; the merge area aliases the tiles

  // ---- merge the warps (shared with AttendKernel; Tq == 1 so row rr is head h*G+rr) ----
  MergeWarpsAndStore<D, kDense>(
      a, region, m, lsum, acc_e, acc_d, tid, lane, warp, sub, c0, h, rr0, Tk,
      [&](int rr) { return static_cast<int64_t>(h) * G + rr; },  // (hq, t = 0)
      [&](int64_t row) { return static_cast<int64_t>(split) * p.num_q_heads + row; });
}

}  // namespace sq_attend_detail
}  // namespace kvstream
