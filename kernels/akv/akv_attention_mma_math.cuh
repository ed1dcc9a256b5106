// Per-lane math of the tensor-core AKV decode kernel (akv_attention_mma.cuh):
// fragment geometry, code unpacking to fp16 pairs, the mma, one 16-token
// block as a lane holds it, and the online-softmax update over a block.
// The mapping it implements is described in akv_attention_mma.cuh.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/akv/akv_attention_kernel.cuh"
#include "kernels/common/device_math.cuh"

namespace kvstream::akv_mma_detail {

using akv_attn_detail::AttnArgs;

constexpr float kNegInf = -__builtin_huge_valf();
constexpr float kLn2 = 0.6931471805599453f;
constexpr uint32_t kMagic = 0x64006400u;  // fp16x2 (1024, 1024): 0x6400 | c == 1024 + c for c < 1024

// fp16x2 (1024 + c0, 1024 + c0), c0 = 2^(B-1) the middle code: subtracting it
// leaves centred codes c - c0 (exact), whose products with P or q have both
// signs, so fp16 rounding of P does not pile up against the zero term the
// way non-negative codes do (the twin test's 2e-3 bound failed by that).
template <int B>
constexpr uint32_t kMagicMid = 0x64006400u | ((1u << (B - 1)) * 0x00010001u);

template <int D, int B>
struct MGeo {
  static constexpr int kKd = D / 4;               // K dims per lane and token
  static constexpr int kVd = D / 8;               // V dims per lane and token = PV n-tiles
  static constexpr int kSteps = D / 16;           // k16 steps of the score mma
  static constexpr int kPairsK = kKd / 2;         // fp16 pairs of K per lane and token (2 per step)
  static constexpr int kKBytes = kKd * B / 8;     // warm K code bytes per lane and token (4..32)
  static constexpr int kVBytes = kVd * B / 8;     // warm V code bytes per lane and token (2..16)
  static constexpr int kPpw = 16 / B;             // fp16 pairs per 32-bit code word
  static constexpr int kEph = 16 / B;             // codes per 16 bits
  // The lane's K dims come in chunks of 16 code bytes (or its whole run if
  // shorter), chunk c at chunk slot 4c + tig of the row: one copy
  // instruction of the warp then covers whole 32-byte sectors.
  static constexpr int kKChunkDims = kKd < 128 / B ? kKd : 128 / B;
  static constexpr int kKChunks = kKd / kKChunkDims;
};

// Dim of element e of lane tig's K run (q uses the same map).
template <int D, int B>
__host__ __device__ constexpr int KDim(int tig, int e) {
  using G = MGeo<D, B>;
  return ((e / G::kKChunkDims) * 4 + tig) * G::kKChunkDims + e % G::kKChunkDims;
}

// Dims (offsets in the lane's K run) of warm pair p, in the unpack's order:
// b=4: word p/4, codes (k, k+4); b=2: word p/8, codes (k, k+8); b=8: word
// p/2, codes (2k, 2k+1). Hot K pairs follow the same order, so one q
// fragment serves both tiers.
template <int B>
__host__ __device__ constexpr int PairLo(int p) {
  return B == 4 ? (p / 4) * 8 + p % 4 : (B == 2 ? (p / 8) * 16 + p % 8 : (p / 2) * 4 + (p % 2) * 2);
}
template <int B>
__host__ __device__ constexpr int PairHi(int p) {
  return PairLo<B>(p) + (B == 4 ? 4 : (B == 2 ? 8 : 1));
}

__device__ __forceinline__ uint32_t AndOr(uint32_t a, uint32_t b, uint32_t c) {  // (a & b) | c, one LOP3
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}

// fp16x2 (1024 + code_lo, 1024 + code_hi) of pair k of word w (lo/hi as PairLo/PairHi).
template <int B>
__device__ __forceinline__ uint32_t CodePair(uint32_t w, int k) {
  if constexpr (B == 4) return AndOr(w >> (4 * k), 0x000F000Fu, kMagic);
  if constexpr (B == 2) return AndOr(w >> (2 * k), 0x00030003u, kMagic);
  return __byte_perm(w, 0x64646464u, k == 0 ? 0x4140 : 0x4342);
}

// Same, for a word whose low 16 bits hold token a's codes and high 16 bits
// token b's (PRMT of two tokens' words): fp16x2 (1024 + a_k, 1024 + b_k).
template <int B>
__device__ __forceinline__ uint32_t CodePairAcross(uint32_t y, int k) {
  if constexpr (B == 4) return AndOr(y >> (4 * k), 0x000F000Fu, kMagic);
  if constexpr (B == 2) return AndOr(y >> (2 * k), 0x00030003u, kMagic);
  return __byte_perm(y, 0x64646464u, k == 0 ? 0x4240 : 0x4341);
}

__device__ __forceinline__ uint32_t H2U(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 U2H(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }

// value = (code pair - 1024) * scale + zero, fp16x2.
__device__ __forceinline__ uint32_t Dequant(uint32_t magic_pair, __half2 scale, __half2 zero) {
  return H2U(__hfma2(__hsub2(U2H(magic_pair), U2H(kMagic)), scale, zero));
}

// bf16 element e of a run of bf16 pairs, as fp32 (exact).
__device__ __forceinline__ float Bf16At(const uint32_t* w, int e) {
  return __uint_as_float((e & 1) ? (w[e >> 1] & 0xffff0000u) : (w[e >> 1] << 16));
}
__device__ __forceinline__ uint32_t PackF16(float lo, float hi) { return H2U(__floats2half2_rn(lo, hi)); }

// C += A B, m16n8k16, fp16 inputs, fp32 accumulators (fragment layouts of the PTX ISA).
__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                    uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// NB bytes at p (NB-aligned) into words (NB < 4: the low bytes of words[0]).
template <int NB>
__device__ __forceinline__ void LoadWords(const void* p, uint32_t* words) {
  if constexpr (NB >= 16) {
#pragma unroll
    for (int i = 0; i < NB / 16; ++i) {
      const uint4 v = __ldg(static_cast<const uint4*>(p) + i);
      words[4 * i] = v.x, words[4 * i + 1] = v.y, words[4 * i + 2] = v.z, words[4 * i + 3] = v.w;
    }
  } else if constexpr (NB == 8) {
    const uint2 v = __ldg(static_cast<const uint2*>(p));
    words[0] = v.x, words[1] = v.y;
  } else if constexpr (NB == 4) {
    words[0] = __ldg(static_cast<const uint32_t*>(p));
  } else {
    words[0] = __ldg(static_cast<const uint16_t*>(p));
  }
}

// NB bytes of shared memory (NB-aligned) into words.
template <int NB>
__device__ __forceinline__ void ChunkToWords(const uint8_t* p, uint32_t* words) {
  if constexpr (NB == 16) {
    const uint4 v = *reinterpret_cast<const uint4*>(p);
    words[0] = v.x, words[1] = v.y, words[2] = v.z, words[3] = v.w;
  } else if constexpr (NB == 8) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    words[0] = v.x, words[1] = v.y;
  } else {
    words[0] = *reinterpret_cast<const uint32_t*>(p);
  }
}

// One 16-token block as one lane (gid, tig) holds it: K and positions of
// tokens gid and 8 + gid (the lane's rows of the score mma), V of tokens
// 2tig, 2tig+1, 8+2tig, 9+2tig at its dims [gid * D/8, (gid + 1) * D/8)
// (its columns of V^T); warm: the scale/zero bits it needs. kCode (warm,
// one group per row: Gn = 1): K and V are used as codes, their scale and
// zero applied to the scores and to P (vs/vz: tokens gid, 8 + gid); else
// every pair is dequantized (vs/vz: the V tokens). Rows past the segment
// are zeros with position INT_MAX (masked; zero V keeps 0 * v finite).
template <int D, int B, bool kWarm, bool kCode>
struct Block {
  using G = MGeo<D, B>;
  static_assert(kWarm || !kCode, "the hot tier has no codes");
  static constexpr int kKB = kWarm ? G::kKBytes : G::kKd * 2;  // K bytes per lane and token
  static constexpr int kVB = kWarm ? G::kVBytes : G::kVd * 2;
  static constexpr int kKW = kKB / 4, kVW = (kVB + 3) / 4;
  uint32_t k[2][kKW];
  uint32_t v[4][kVW];
  int pos[2];
  // Warm only (fp16 bits). K: per token and per chunk of the lane's K run (a
  // chunk lies in one group; with 8-bit codes at D = 128 the two chunks of a
  // lane can be in different groups). V: see above.
  uint16_t ks[2][G::kKChunks], kz[2][G::kKChunks], vs[4], vz[4];

  // Hot: this lane's part of the block at hot row tb, plain vector loads.
  __device__ __forceinline__ void Load(const AttnArgs& a, int kvh, int tb, int seg_e, int gid, int tig) {
    static_assert(!kWarm, "warm blocks come through the ring (ReadWarm)");
    const auto* hot_k = static_cast<const __nv_bfloat16*>(a.hot_k);
    const auto* hot_v = static_cast<const __nv_bfloat16*>(a.hot_v);
#pragma unroll
    for (int x = 0; x < 2; ++x) {
      const int t = tb + 8 * x + gid;
#pragma unroll
      for (int w = 0; w < kKW; ++w) k[x][w] = 0;
      pos[x] = INT_MAX;
      if (t < seg_e) {
        const __nv_bfloat16* row = hot_k + (static_cast<int64_t>(t) * a.num_kv_heads + kvh) * D;
#pragma unroll
        for (int c = 0; c < G::kKChunks; ++c)
          LoadWords<G::kKChunkDims * 2>(row + KDim<D, B>(tig, c * G::kKChunkDims), k[x] + c * G::kKChunkDims / 2);
        pos[x] = __ldg(a.hot_pos + t);
      }
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int t = tb + 8 * (u >> 1) + 2 * tig + (u & 1);
#pragma unroll
      for (int w = 0; w < kVW; ++w) v[u][w] = 0;
      if (t < seg_e) LoadWords<kVB>(hot_v + (static_cast<int64_t>(t) * a.num_kv_heads + kvh) * D + gid * G::kVd, v[u]);
    }
  }

  // fp16 pair p (PairLo order) of the K of token gid + 8x: codes (kCode) or values.
  __device__ __forceinline__ uint32_t KPair(int x, int p) const {
    if constexpr (kWarm) {
      const uint32_t magic = CodePair<B>(k[x][p / G::kPpw], p % G::kPpw);
      if constexpr (kCode) return H2U(__hsub2(U2H(magic), U2H(kMagicMid<B>)));  // c - c0
      const int c = p / (G::kKChunkDims / 2);  // the chunk holding pair p
      const __half2 s = __half2half2(__ushort_as_half(ks[x][c])), z = __half2half2(__ushort_as_half(kz[x][c]));
      return Dequant(magic, s, z);
    } else {
      return PackF16(Bf16At(k[x], PairLo<B>(p)), Bf16At(k[x], PairHi<B>(p)));
    }
  }
  // fp16 pair (token 2tig + 8y, token 2tig + 8y + 1) of V at the lane's dim j.
  __device__ __forceinline__ uint32_t VPair(int y, int j) const {
    const uint32_t* a = v[2 * y];
    const uint32_t* b = v[2 * y + 1];
    if constexpr (kWarm) {
      const int hw = j / G::kEph;  // which 16 bits of the lane's codes hold dim j
      const uint32_t across = __byte_perm(a[hw / 2], b[hw / 2], (hw & 1) ? 0x7632 : 0x5410);
      const uint32_t magic = CodePairAcross<B>(across, j % G::kEph);
      if constexpr (kCode) return H2U(__hsub2(U2H(magic), U2H(kMagicMid<B>)));  // c - c0
      const __half2 s = __halves2half2(__ushort_as_half(vs[2 * y]), __ushort_as_half(vs[2 * y + 1]));
      const __half2 z = __halves2half2(__ushort_as_half(vz[2 * y]), __ushort_as_half(vz[2 * y + 1]));
      return Dequant(magic, s, z);
    } else {
      return PackF16(Bf16At(a, j), Bf16At(b, j));
    }
  }
};

// Transposes the 8x8 fp16 matrix whose fragment lane (gid, tig) holds at
// (row gid, cols 2tig, 2tig + 1) (one instruction, sm_75+).
__device__ __forceinline__ uint32_t Transpose8x8(uint32_t x) {
  uint32_t y;
  asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

// Online-softmax state of lane (gid, tig) for query heads 2tig + e (e = 0, 1):
// running max m[e] (equal on the 8 lanes of a tig), the lane's part of the
// row sum l[e] and, with codes, of sum_t p_t * vzero_t (zsum[e]); the PV
// accumulators of O^T: acc[i] = {O[2tig][gid*D/8 + 2i], O[2tig+1][same],
// O[2tig][gid*D/8 + 2i + 1], O[2tig+1][same]}.
template <int D>
struct Softmax {
  float m[2], l[2], zsum[2];
  float acc[D / 16][4];
};

// Scores of the 16 tokens x 8 heads (S^T = K q^T: tokens are the mma rows,
// so no row is wasted), online softmax, then O^T += V^T P^T (dims are the
// rows; P^T is the score fragment transposed by movmatrix). qsum[e]: sum of
// head 2tig + e's fp16 q (the zero term of code-domain scores).
// kScaleP (kernels with code-domain warm rows, for hot and warm blocks
// alike): P enters the PV mma multiplied by c0 = 2^(b-1), exactly, and the
// output divides by it. With codes, P is p * vscale, which for 8-bit codes of
// a narrow value range (vscale ~ range / 255) is subnormal in fp16 already at
// p ~ 0.1; p * vscale * c0 ~ p * range / 2 is not.
template <bool kScaleP, int D, int B, bool kWarm, bool kCode>
__device__ __forceinline__ void Attend(const Block<D, B, kWarm, kCode>& blk, const uint32_t* qa, const float* qsum,
                                       float scale_log2, int qpos, Softmax<D>& st) {
  using G = MGeo<D, B>;
  constexpr float kCodeMid = static_cast<float>(1 << (B - 1));
  float c[2][4];  // even / odd k steps: two independent mma chains
#pragma unroll
  for (int h = 0; h < 2; ++h) c[h][0] = c[h][1] = c[h][2] = c[h][3] = 0.0f;
#pragma unroll
  for (int s = 0; s < G::kSteps; ++s)
    Mma(c[s & 1], blk.KPair(0, 2 * s), blk.KPair(1, 2 * s), blk.KPair(0, 2 * s + 1), blk.KPair(1, 2 * s + 1), qa[2 * s],
        qa[2 * s + 1]);
  // p[x][e]: token gid + 8x, head 2tig + e.
  float p[2][2] = {{c[0][0] + c[1][0], c[0][1] + c[1][1]}, {c[0][2] + c[1][2], c[0][3] + c[1][3]}};
#pragma unroll
  for (int x = 0; x < 2; ++x) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float sc = p[x][e];
      if constexpr (kCode) {  // k^ = ks (c - c0) + (kz + ks c0)
        const float ks = __half2float(__ushort_as_half(blk.ks[x][0])),
                    kz = __half2float(__ushort_as_half(blk.kz[x][0]));
        sc = fmaf(ks, sc, fmaf(ks, kCodeMid, kz) * qsum[e]);
      }
      p[x][e] = blk.pos[x] > qpos ? kNegInf : sc * scale_log2;
    }
  }
  float corr[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    float mx = fmaxf(st.m[e], fmaxf(p[0][e], p[1][e]));
#pragma unroll
    for (int off = 4; off < 32; off *= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    const float m_use = mx == kNegInf ? 0.0f : mx;  // nothing visible yet: weights stay 0
    corr[e] = FastExp2(st.m[e] - m_use);
    st.m[e] = mx;
    p[0][e] = FastExp2(p[0][e] - m_use);
    p[1][e] = FastExp2(p[1][e] - m_use);
    st.l[e] = fmaf(st.l[e], corr[e], p[0][e] + p[1][e]);
  }
  if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {  // a max moved somewhere in the warp
#pragma unroll
    for (int i = 0; i < D / 16; ++i) {
      st.acc[i][0] *= corr[0], st.acc[i][2] *= corr[0];
      st.acc[i][1] *= corr[1], st.acc[i][3] *= corr[1];
    }
    if constexpr (kCode) st.zsum[0] *= corr[0], st.zsum[1] *= corr[1];
  }
  static_assert(!kCode || kScaleP, "code-domain blocks scale P");
  if constexpr (kCode) {  // p (vs (c - c0) + (vz + vs c0)): the scale (times c0) goes into P, the rest into zsum
#pragma unroll
    for (int x = 0; x < 2; ++x) {
      const float vs = __half2float(__ushort_as_half(blk.vs[x]));
      const float vz = fmaf(vs, kCodeMid, __half2float(__ushort_as_half(blk.vz[x])));
#pragma unroll
      for (int e = 0; e < 2; ++e) st.zsum[e] = fmaf(p[x][e], vz, st.zsum[e]), p[x][e] *= vs * kCodeMid;
    }
  } else if constexpr (kScaleP) {
#pragma unroll
    for (int x = 0; x < 2; ++x) p[x][0] *= kCodeMid, p[x][1] *= kCodeMid;
  }
  // P^T fragments: (head gid, tokens 2tig, 2tig + 1) of tokens 0-7 and 8-15.
  const uint32_t b0 = Transpose8x8(PackF16(p[0][0], p[0][1])), b1 = Transpose8x8(PackF16(p[1][0], p[1][1]));
#pragma unroll
  for (int i = 0; i < D / 16; ++i)
    Mma(st.acc[i], blk.VPair(0, 2 * i), blk.VPair(0, 2 * i + 1), blk.VPair(1, 2 * i), blk.VPair(1, 2 * i + 1), b0, b1);
}

}  // namespace kvstream::akv_mma_detail
