// Tensor-core decode kernel of akv_mixed_attention (M = 1 query row, bf16 hot
// tier, G = Hq / Hkv <= kAkvAttnMmaMaxGroup); semantics and shapes in
// akv_attention.h. Included by the bf16 instantiation units only.
//
// Why: the CUDA-core kernel spends one FMA per element per query head plus a
// 4-instruction unpack per element, ~15 instructions per warm byte, and
// reaches ~15% of HBM bandwidth (its NOTE). Here the G query heads of a KV
// head are the rows of mma.sync.m16n8k16 (fp16 in, fp32 accumulate; rows
// past G are zero, the tensor cores have room to spare), so an element costs
// its unpack only: a LOP3 (b = 2, 4) or PRMT (b = 8) puts two codes under
// the fp16 exponent of 1024 (0x6400 | c = 1024 + c, exact), an HSUB2 leaves
// the exact codes, an HFMA2 applies the group's fp16 scale and zero.
// Numerics differ from the twin by fp16 rounding of the dequantized K/V
// (relative 2^-11), of the hot K/V and q (bf16 -> fp16: exact in range),
// and of P (fp16, in [0, 1]); softmax state and accumulation are fp32.
//
// Mapping: grid (S, Hkv), kWarps warps; the split's hot rows, then its warm
// rows, are dealt to warps in blocks of 16 tokens (two 8-token score tiles).
// Lane = 4 * gid + tig (the mma fragment coordinates).
//   scores  S[r, n] = q_r . k_n: A = q (row r = query head r of the group,
//           built once), B = K^T: lane loads token n = gid of each tile, dims
//           [tig * D/4, (tig + 1) * D/4) in one contiguous run. The order of
//           the k index inside an mma is free as long as A uses the same one,
//           so pairs are taken in the order the unpack yields them (PairLo).
//   P       the score accumulator of lane (gid, tig) holds S[gid, 2tig] and
//           S[gid, 2tig + 1] of each tile: exactly the A fragment of P for
//           the PV mma (FlashAttention-2's register reuse), no shuffles.
//   PV      O[r, d] = sum_n P[r, n] v_n[d]: B = V: lane needs tokens 2tig,
//           2tig+1, 8+2tig, 9+2tig at dims [gid * D/8, (gid + 1) * D/8):
//           column gid of n-tile j is dim gid * D/8 + j; a pair across two
//           tokens comes from one PRMT of their code words.
// Loads (warm tier): each warp streams its blocks through a shared-memory
// ring with cp.async, kStages - 1 blocks in flight (the first version held
// one block ahead in registers and was latency bound: ~0.5 of the bytes in
// flight needed at 16K+ tokens per SM, bench/results/gpu/akv_attention_*).
// A lane copies and reads back its own code bytes (lane-major slots: no bank
// conflicts); the block's scale/zero groups and positions are copied by the
// warp together and read after a __syncwarp. The hot tier (bf16, short) is
// read with plain vector loads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_attention_kernel.cuh"
#include "kernels/common/cp_async.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"

namespace kvstream::akv_mma_detail {

using akv_attn_detail::AttnArgs;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kNegInf = -__builtin_huge_valf();
constexpr float kLn2 = 0.6931471805599453f;
constexpr uint32_t kMagic = 0x64006400u;  // fp16x2 (1024, 1024): 0x6400 | c == 1024 + c for c < 1024
constexpr int kWarpRingBytes = 20 * 1024;  // shared memory per warp for the warm ring (2 CTAs per SM)
constexpr int kMaxStages = 8;

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
};

// One warp's warm ring: kStages stages of one 16-token block each.
//   K   [2 tokens][kKChunks][32 lanes][kKChunk]   lane-major, each lane its own run
//   V   [4 tokens][kVChunks][32 lanes][kVChunk]   (a 2-byte run: its aligned 4 bytes)
//   S   [4: K scale, K zero, V scale, V zero][16 tokens] 8-byte slots: the token's
//       Gn fp16 groups (Gn = 1: the aligned 4 bytes holding the one group)
//   P   [16 tokens] int32 positions
template <int D, int B>
struct WarmRing {
  using G = MGeo<D, B>;
  static constexpr int kKChunk = G::kKBytes < 16 ? G::kKBytes : 16;
  static constexpr int kKChunks = G::kKBytes / kKChunk;
  static constexpr int kVCopy = G::kVBytes < 4 ? 4 : G::kVBytes;
  static constexpr int kVChunk = kVCopy < 16 ? kVCopy : 16;
  static constexpr int kVChunks = kVCopy / kVChunk;
  static constexpr int kKOff = 0;
  static constexpr int kVOff = kKOff + 2 * G::kKBytes * 32;
  static constexpr int kSOff = kVOff + 4 * kVCopy * 32;
  static constexpr int kPOff = kSOff + 4 * 16 * 8;
  static constexpr int kStageBytes = kPOff + 16 * 4;
  static constexpr int kStages = kWarpRingBytes / kStageBytes < kMaxStages ? kWarpRingBytes / kStageBytes : kMaxStages;
  static constexpr int kWarpBytes = kStages * kStageBytes;
  static constexpr int kMergeFloats = kAkvAttnMmaMaxGroup * D + 2 * kAkvAttnMmaMaxGroup;  // o[8][D], m[8], l[8]
  static_assert(kStages >= 2, "the ring needs a stage in flight");
  static_assert(kMergeFloats * 4 <= kWarpBytes, "the warp merge reuses the ring");
  static_assert(kStageBytes % 16 == 0, "stages keep 16-byte alignment");
};

// Enqueues the copies of the block at warm row tb into ring stage st.
template <int D, int B>
__device__ __forceinline__ void IssueWarm(const AttnArgs& a, int kvh, int tb, int seg_e, int lane, uint8_t* st) {
  using G = MGeo<D, B>;
  using R = WarmRing<D, B>;
  constexpr int kCb = D * B / 8;
  const int gid = lane / 4, tig = lane % 4;
#pragma unroll
  for (int x = 0; x < 2; ++x) {
    const int t = tb + 8 * x + gid;
    const bool valid = t < seg_e;
    const uint8_t* src = a.warm_k + (valid ? static_cast<int64_t>(t) * a.num_kv_heads + kvh : 0) * kCb + tig * G::kKBytes;
#pragma unroll
    for (int c = 0; c < R::kKChunks; ++c)
      CpAsync<R::kKChunk>(st + R::kKOff + ((x * R::kKChunks + c) * 32 + lane) * R::kKChunk, src + c * R::kKChunk, valid);
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int t = tb + 8 * (u >> 1) + 2 * tig + (u & 1);
    const bool valid = t < seg_e;
    const int off = G::kVBytes < 4 ? (gid * G::kVBytes) & ~3 : gid * G::kVBytes;
    const uint8_t* src = a.warm_v + (valid ? static_cast<int64_t>(t) * a.num_kv_heads + kvh : 0) * kCb + off;
#pragma unroll
    for (int c = 0; c < R::kVChunks; ++c)
      CpAsync<R::kVChunk>(st + R::kVOff + ((u * R::kVChunks + c) * 32 + lane) * R::kVChunk, src + c * R::kVChunk, valid);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = lane + 32 * r, arr = i / 16, j = i % 16, t = tb + j;
    const bool valid = t < seg_e;
    const uint16_t* base = arr == 0 ? a.wks : (arr == 1 ? a.wkz : (arr == 2 ? a.wvs : a.wvz));
    const int64_t idx = (valid ? static_cast<int64_t>(t) * a.num_kv_heads + kvh : 0) * a.groups;
    uint8_t* dst = st + R::kSOff + (arr * 16 + j) * 8;
    if (a.groups == 4) CpAsync<8>(dst, base + idx, valid);
    else CpAsync<4>(dst, base + (idx & ~int64_t{1}), valid);  // Gn = 2: aligned already
  }
  if (lane < 16) {
    const int t = tb + lane;
    CpAsync<4>(st + R::kPOff + lane * 4, a.warm_pos + (t < seg_e ? t : 0), t < seg_e);
  }
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

__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a2, uint32_t b0, uint32_t b1) {
  // A rows 8..15 (a1, a3) are zero: the group has at most 8 query heads.
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
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

// One 16-token block as one lane holds it: K of tokens gid and 8 + gid, V
// and positions of tokens 2tig, 2tig+1, 8+2tig, 9+2tig (the tokens of the
// lane's scores); warm: the groups' scale/zero bits. Rows past the segment
// are zeros with position INT_MAX (masked; zero V keeps 0 * v finite).
template <int D, int B, bool kWarm>
struct Block {
  using G = MGeo<D, B>;
  static constexpr int kKB = kWarm ? G::kKBytes : G::kKd * 2;  // K bytes per lane and token
  static constexpr int kVB = kWarm ? G::kVBytes : G::kVd * 2;
  static constexpr int kKW = kKB / 4, kVW = (kVB + 3) / 4;
  uint32_t k[2][kKW];
  uint32_t v[4][kVW];
  int pos[4];
  uint16_t ks[2], kz[2], vs[4], vz[4];  // warm only (fp16 bits)

  // Hot: this lane's part of the block at hot row tb, plain vector loads.
  __device__ __forceinline__ void Load(const AttnArgs& a, int kvh, int tb, int seg_e, int gid, int tig) {
    static_assert(!kWarm, "warm blocks come through the ring (FromRing)");
    const auto* hot_k = static_cast<const __nv_bfloat16*>(a.hot_k);
    const auto* hot_v = static_cast<const __nv_bfloat16*>(a.hot_v);
#pragma unroll
    for (int x = 0; x < 2; ++x) {
      const int t = tb + 8 * x + gid;
#pragma unroll
      for (int w = 0; w < kKW; ++w) k[x][w] = 0;
      if (t < seg_e) LoadWords<kKB>(hot_k + (static_cast<int64_t>(t) * a.num_kv_heads + kvh) * D + tig * G::kKd, k[x]);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int t = tb + 8 * (u >> 1) + 2 * tig + (u & 1);
#pragma unroll
      for (int w = 0; w < kVW; ++w) v[u][w] = 0;
      pos[u] = INT_MAX;
      if (t < seg_e) {
        LoadWords<kVB>(hot_v + (static_cast<int64_t>(t) * a.num_kv_heads + kvh) * D + gid * G::kVd, v[u]);
        pos[u] = __ldg(a.hot_pos + t);
      }
    }
  }

  // Warm: this lane's part of the block at warm row tb from ring stage st
  // (its copies have landed and the warp has passed a __syncwarp).
  __device__ __forceinline__ void FromRing(const AttnArgs& a, int kvh, int tb, int seg_e, int lane, const uint8_t* st) {
    static_assert(kWarm, "the ring holds warm blocks");
    using R = WarmRing<D, B>;
    const int gid = lane / 4, tig = lane % 4;
#pragma unroll
    for (int x = 0; x < 2; ++x) {
#pragma unroll
      for (int c = 0; c < R::kKChunks; ++c)
        ChunkToWords<R::kKChunk>(st + R::kKOff + ((x * R::kKChunks + c) * 32 + lane) * R::kKChunk, k[x] + c * R::kKChunk / 4);
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
#pragma unroll
      for (int c = 0; c < R::kVChunks; ++c)
        ChunkToWords<R::kVChunk>(st + R::kVOff + ((u * R::kVChunks + c) * 32 + lane) * R::kVChunk, v[u] + c * R::kVChunk / 4);
      if constexpr (G::kVBytes < 4) v[u][0] >>= ((gid * G::kVBytes) & 3) * 8;  // the lane's 2 bytes to the bottom
    }
    const uint16_t* sc = reinterpret_cast<const uint16_t*>(st + R::kSOff);  // [4][16] slots of 4 uint16
    const int* ps = reinterpret_cast<const int*>(st + R::kPOff);
    const int grp_k = tig * G::kKd / a.group_size, grp_v = gid * G::kVd / a.group_size;
    // Gn = 1 slots hold the aligned pair of fp16 values around the token's one group.
    const auto slot = [&](int arr, int j, int grp) {
      const int half = a.groups == 1 ? ((tb + j) * a.num_kv_heads + kvh) & 1 : grp;
      return sc[(arr * 16 + j) * 4 + half];
    };
#pragma unroll
    for (int x = 0; x < 2; ++x) ks[x] = slot(0, 8 * x + gid, grp_k), kz[x] = slot(1, 8 * x + gid, grp_k);
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int j = 8 * (u >> 1) + 2 * tig + (u & 1);
      vs[u] = slot(2, j, grp_v), vz[u] = slot(3, j, grp_v);
      pos[u] = tb + j < seg_e ? ps[j] : INT_MAX;
    }
  }

  // fp16 pair p of the K of tile x (B fragment order, see PairLo).
  __device__ __forceinline__ uint32_t KPair(int x, int p) const {
    if constexpr (kWarm) {
      const __half2 s = __half2half2(__ushort_as_half(ks[x])), z = __half2half2(__ushort_as_half(kz[x]));
      return Dequant(CodePair<B>(k[x][p / G::kPpw], p % G::kPpw), s, z);
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
      const __half2 s = __halves2half2(__ushort_as_half(vs[2 * y]), __ushort_as_half(vs[2 * y + 1]));
      const __half2 z = __halves2half2(__ushort_as_half(vz[2 * y]), __ushort_as_half(vz[2 * y + 1]));
      return Dequant(CodePairAcross<B>(across, j % G::kEph), s, z);
    } else {
      return PackF16(Bf16At(a, j), Bf16At(b, j));
    }
  }
};

// Online-softmax state of the lane: row gid's running max m (equal on the
// row's 4 lanes), the lane's part of the row sum l, and the PV accumulators
// (acc[j][0..1]: row gid, dims (2tig)*D/8 + j and (2tig+1)*D/8 + j; [2..3]: zero rows).
template <int D>
struct Softmax {
  float m, l;
  float acc[D / 8][4];
};

template <int D, int B, bool kWarm>
__device__ __forceinline__ void Attend(const Block<D, B, kWarm>& blk, const uint32_t* qa, float scale_log2, int qpos,
                                       Softmax<D>& st) {
  using G = MGeo<D, B>;
  // Two accumulators per tile (even / odd k steps): four independent mma chains, not two.
  float c[2][2][4];
#pragma unroll
  for (int x = 0; x < 2; ++x) {
#pragma unroll
    for (int h = 0; h < 2; ++h) c[x][h][0] = c[x][h][1] = c[x][h][2] = c[x][h][3] = 0.0f;
#pragma unroll
    for (int s = 0; s < G::kSteps; ++s)
      Mma(c[x][s & 1], qa[2 * s], qa[2 * s + 1], blk.KPair(x, 2 * s), blk.KPair(x, 2 * s + 1));
  }
  // tokens 2tig, 2tig+1, 8+2tig, 9+2tig: blk.pos order
  float p[4] = {c[0][0][0] + c[0][1][0], c[0][0][1] + c[0][1][1], c[1][0][0] + c[1][1][0], c[1][0][1] + c[1][1][1]};
  float mx = st.m;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    p[u] = blk.pos[u] > qpos ? kNegInf : p[u] * scale_log2;
    mx = fmaxf(mx, p[u]);
  }
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  const float m_use = mx == kNegInf ? 0.0f : mx;  // nothing visible yet: weights stay 0
  const float corr = FastExp2(st.m - m_use);
  st.m = mx;
  float sum = 0.0f;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    p[u] = FastExp2(p[u] - m_use);
    sum += p[u];
  }
  st.l = st.l * corr + sum;
  if (__any_sync(0xffffffffu, corr != 1.0f)) {  // the max moved somewhere in the warp
#pragma unroll
    for (int j = 0; j < G::kVd; ++j) st.acc[j][0] *= corr, st.acc[j][1] *= corr;
  }
  const uint32_t pa0 = PackF16(p[0], p[1]), pa2 = PackF16(p[2], p[3]);
#pragma unroll
  for (int j = 0; j < G::kVd; ++j) Mma(st.acc[j], pa0, pa2, blk.VPair(0, j), blk.VPair(1, j));
}

// Tokens [seg_b, seg_e) of one tier, blocks dealt to warps round robin.
template <int D, int B, bool kWarm>
__device__ __forceinline__ void Segment(const AttnArgs& a, int kvh, int seg_b, int seg_e, int warp, int gid, int tig,
                                        const uint32_t* qa, int qpos, uint8_t* ring, Softmax<D>& st) {
  const int n_blocks = seg_e > seg_b ? (seg_e - seg_b + 15) / 16 : 0;
  int b = warp;
  if (b >= n_blocks) return;
  if constexpr (kWarm) {
    using R = WarmRing<D, B>;
    const int lane = 4 * gid + tig;
    const int n_mine = (n_blocks - warp + kWarps - 1) / kWarps;  // blocks warp, warp + kWarps, ...
    const auto row_of = [&](int i) { return seg_b + 16 * (warp + kWarps * i); };
#pragma unroll
    for (int s = 0; s < R::kStages - 1; ++s) {
      if (s < n_mine) IssueWarm<D, B>(a, kvh, row_of(s), seg_e, lane, ring + s * R::kStageBytes);
      CpAsyncCommit();
    }
    for (int i = 0; i < n_mine; ++i) {
      // NOTE(akv): the stage refilled here was read in step i - 1, by every
      // lane (the shared slots): the warp barrier orders those reads first.
      __syncwarp();
      const int ahead = i + R::kStages - 1;
      if (ahead < n_mine) IssueWarm<D, B>(a, kvh, row_of(ahead), seg_e, lane, ring + (ahead % R::kStages) * R::kStageBytes);
      CpAsyncCommit();
      CpAsyncWait<R::kStages - 1>();  // this lane's copies of step i have landed
      __syncwarp();                   // and every lane's (the shared slots)
      Block<D, B, true> blk;
      blk.FromRing(a, kvh, row_of(i), seg_e, lane, ring + (i % R::kStages) * R::kStageBytes);
      Attend(blk, qa, a.scale_log2, qpos, st);
    }
    CpAsyncWait<0>();
  } else {
    for (; b < n_blocks; b += kWarps) {
      Block<D, B, false> cur;
      cur.Load(a, kvh, seg_b + 16 * b, seg_e, gid, tig);
      Attend(cur, qa, a.scale_log2, qpos, st);
    }
  }
}

template <int D, int B>
__global__ void __launch_bounds__(kThreads, 2) AkvAttentionMmaKernel(const AttnArgs a) {
  using G = MGeo<D, B>;
  using R = WarmRing<D, B>;
  constexpr int kRowFloats = R::kWarpBytes / 4;  // per-warp region: the ring, then o[8][D], m[8], l[8]
  extern __shared__ uint4 akv_mma_smem[];        // kWarps * R::kWarpBytes
  float* smem = reinterpret_cast<float*>(akv_mma_smem);

  const int split = blockIdx.x, kvh = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int n_hot = min(max(a.counts[kAkvNHot], 0), a.hot_cap);
  const int n_warm = min(max(a.counts[kAkvNWarm], 0), a.warm_cap);
  int begin = 0, end = 0;
  AkvAttentionSplitRange(n_hot + n_warm, a.num_splits, split, &begin, &end);
  const int qpos = __ldg(a.q_pos);

  // A fragment of q (row gid = query head kvh * G + gid; zero past G), in PairLo order.
  uint32_t qa[G::kPairsK];
  {
    float qf[G::kKd];
#pragma unroll
    for (int e = 0; e < G::kKd; ++e) qf[e] = 0.0f;
    if (gid < a.group) {
      const __nv_bfloat16* qp =
          static_cast<const __nv_bfloat16*>(a.q) + (kvh * a.group + gid) * a.q_stride_h + tig * G::kKd;
#pragma unroll
      for (int i = 0; i < G::kKd / 8; ++i) Vec16<__nv_bfloat16>::Load(__ldg(reinterpret_cast<const uint4*>(qp) + i), qf + 8 * i);
    }
#pragma unroll
    for (int p = 0; p < G::kPairsK; ++p) qa[p] = PackF16(qf[PairLo<B>(p)], qf[PairHi<B>(p)]);
  }

  Softmax<D> st;
  st.m = kNegInf, st.l = 0.0f;
#pragma unroll
  for (int j = 0; j < G::kVd; ++j) st.acc[j][0] = st.acc[j][1] = st.acc[j][2] = st.acc[j][3] = 0.0f;
  uint8_t* ring = reinterpret_cast<uint8_t*>(akv_mma_smem) + warp * R::kWarpBytes;
  Segment<D, B, false>(a, kvh, begin, min(end, n_hot), warp, gid, tig, qa, qpos, ring, st);
  Segment<D, B, true>(a, kvh, max(begin, n_hot) - n_hot, max(end - n_hot, 0), warp, gid, tig, qa, qpos, ring, st);
  __syncwarp();  // the warp's ring reads are done before its merge rows overwrite them
  st.l += __shfl_xor_sync(0xffffffffu, st.l, 1);
  st.l += __shfl_xor_sync(0xffffffffu, st.l, 2);

  float* mine = smem + warp * kRowFloats;
#pragma unroll
  for (int j = 0; j < G::kVd; ++j) {
    mine[gid * D + (2 * tig) * G::kVd + j] = st.acc[j][0];
    mine[gid * D + (2 * tig + 1) * G::kVd + j] = st.acc[j][1];
  }
  if (tig == 0) {
    mine[kAkvAttnMmaMaxGroup * D + gid] = st.m;
    mine[kAkvAttnMmaMaxGroup * D + kAkvAttnMmaMaxGroup + gid] = st.l;
  }
  __syncthreads();

  // Merge the warps: one thread per (query head, 4 columns).
  for (int item = threadIdx.x; item < a.group * (D / 4); item += kThreads) {
    const int r = item / (D / 4), c = (item % (D / 4)) * 4;
    float mx = kNegInf;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, smem[w * kRowFloats + kAkvAttnMmaMaxGroup * D + r]);
    const float m_use = mx == kNegInf ? 0.0f : mx;
    float sum = 0.0f, o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float* ws = smem + w * kRowFloats;
      const float cw = FastExp2(ws[kAkvAttnMmaMaxGroup * D + r] - m_use);
      sum += ws[kAkvAttnMmaMaxGroup * D + kAkvAttnMmaMaxGroup + r] * cw;
#pragma unroll
      for (int e = 0; e < 4; ++e) o[e] += cw * ws[r * D + c + e];
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const float lse = sum > 0.0f ? (mx + __log2f(sum)) * kLn2 : kNegInf;
    const int h = kvh * a.group + r;  // M = 1: output row h
    if (a.num_splits == 1) {
      __nv_bfloat16* op = static_cast<__nv_bfloat16*>(a.out) + static_cast<int64_t>(h) * D + c;
      const __nv_bfloat162 lo = __floats2bfloat162_rn(o[0] * inv, o[1] * inv);
      const __nv_bfloat162 hi = __floats2bfloat162_rn(o[2] * inv, o[3] * inv);
      *reinterpret_cast<uint2*>(op) =
          make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
      if (c == 0 && a.lse != nullptr) a.lse[h] = lse;
    } else {
      const int64_t prow = static_cast<int64_t>(h) * a.num_splits + split;
      *reinterpret_cast<float4*>(a.partial_out + prow * D + c) = make_float4(o[0] * inv, o[1] * inv, o[2] * inv, o[3] * inv);
      if (c == 0) a.partial_lse[prow] = lse;
    }
  }
}

template <int D, int B>
cudaError_t LaunchMmaBits(const AttnArgs& a, cudaStream_t stream) {
  const dim3 grid(a.num_splits, a.num_kv_heads);
  constexpr int kSmem = kWarps * WarmRing<D, B>::kWarpBytes;
  // Above the 48 KB default: an attribute of the function, set (idempotently) per launch, so it
  // holds on every device and inside graph capture; it neither allocates nor syncs.
  KV_CUDA_CHECK(cudaFuncSetAttribute(AkvAttentionMmaKernel<D, B>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  AkvAttentionMmaKernel<D, B><<<grid, kThreads, kSmem, stream>>>(a);
  KV_CUDA_CHECK(cudaGetLastError());
  if (a.num_splits > 1) {
    const unsigned blocks = static_cast<unsigned>((static_cast<int64_t>(a.num_heads) + 3) / 4);
    akv_attn_detail::AkvAttentionMergeKernel<__nv_bfloat16, D><<<blocks, 128, 0, stream>>>(a);
    KV_CUDA_CHECK(cudaGetLastError());
  }
  return cudaSuccess;
}

// The tensor-core path serves this launch (see AkvAttnPath).
inline bool MmaApplies(const AttnArgs& a) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return a.num_rows == 1 && a.group <= kAkvAttnMmaMaxGroup && aligned16(a.warm_k) && aligned16(a.warm_v);
}

template <int D>
cudaError_t LaunchMma(const AttnArgs& a, int bits, cudaStream_t stream) {
  switch (bits) {
    case 2: return LaunchMmaBits<D, 2>(a, stream);
    case 4: return LaunchMmaBits<D, 4>(a, stream);
    case 8: return LaunchMmaBits<D, 8>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kvstream::akv_mma_detail
