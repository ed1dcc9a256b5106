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
// and of P (fp16); softmax state and accumulation are fp32.
// NOTE(akv): fp16 range: hot K/V or q beyond +-65504, or a dequantized
// value past it (saturated scale/zero, counted in kAkvTotQuantSaturations),
// become inf here where the twin stays finite; real activations are far
// inside it. The scale-slot copies read whole 16-byte chunks around the
// scale arrays' bytes (mapped: same granule), which memcheck may report.
//
// Mapping: grid (S, Hkv / HC), one warp per KV head (HC = AkvMmaKvHeadsPerCta
// warps per CTA); each warp walks its split's hot rows, then its warm rows,
// in blocks of 16 tokens. Lane = 4 * gid + tig (mma fragment coordinates).
//   scores  S^T[n, r] = k_n . q_r: A = K (rows = the 16 tokens; lane loads
//           tokens gid and 8 + gid, its D/4 dims: KDim), B = q^T (column r =
//           query head r of the group, zero past G; built once). The order
//           of the k index inside an mma is free as long as both operands
//           use it, so pairs are taken as the unpack yields them (PairLo).
//   softmax lane holds tokens gid, 8 + gid of heads 2tig, 2tig + 1: the max
//           over tokens is a 3-step shuffle over gid.
//   PV      O^T[d, r] = sum_n v_n[d] P[r, n]: A = V^T (rows = dims: lane
//           holds dims gid*D/8 + 2i, + 2i + 1 of m-tile i, as pairs across
//           tokens 2tig, 2tig+1 (and + 8) from one PRMT of the two tokens'
//           code words), B = P^T: the score fragment, fp16, transposed by
//           one movmatrix per 8 tokens. Neither mma wastes a row on the G <= 8
//           heads (an earlier layout with heads as rows wasted half of both).
//   output  lane ends with heads 2tig, 2tig + 1 at dims [gid*D/8, (gid+1)*D/8):
//           written straight from registers, no cross-warp merge.
// kCode (warm rows with one scale/zero group per row, Gn = 1, the default
// g = D): codes go into the mma as they are (exact fp16 integers) and the
// scale/zero are applied once per score and per P value: s = ks (q.c) +
// kz sum(q), p v^ = (p vs) c + p vz; else each pair is dequantized (HFMA2).
// Loads (warm tier): the CTA streams blocks through a shared-memory ring with
// cp.async, stages - 1 blocks in flight, one barrier per block. A lane
// copies and reads back its own code bytes (lane-major slots: no bank
// conflicts). The HC heads' scale/zero groups of a token are adjacent in
// memory, so the CTA copies them once, in 16-byte chunks, for all its warps:
// one CTA per KV head (the first layout) re-read each 32-byte sector per head
// in 2-8 byte pieces and ran into L2 request limits (ncu: L2 83% busy, DRAM
// 48% at 8-bit codes; bench/results/gpu/akv_attention_ring_ea15577_h100.json).
// The hot tier (bf16, short) is read with plain vector loads.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_attention_kernel.cuh"
#include "kernels/akv/akv_attention_mma_math.cuh"
#include "kernels/common/cp_async.cuh"
#include "kernels/common/smem_attribute.cuh"
#include "kernels/cuda_check.h"

namespace kvstream::akv_mma_detail {

constexpr int kMaxStages = 4;       // ring depth (blocks in flight = stages - 1)
constexpr int kRingBudget = 110 * 1024;  // shared memory of a full CTA's ring: two CTAs per SM
constexpr int kSlotChunks = 5;      // 16-byte chunks per scale slot: <= 64 bytes at any alignment
constexpr int kSlotBytes = 16 * kSlotChunks;

// One stage of the CTA's warm ring (HC = warps of the CTA):
//   KV  [HC warps][K: 2 tokens x kKChunks x 32 lanes x kKChunk | V: 4 tokens x kVChunks x 32 x kVChunk]
//       lane-major, each lane its own runs (a 2-byte V run: its aligned 4 bytes)
//   S   [4: K scale, K zero, V scale, V zero][16 tokens] kSlotBytes: the 16-byte chunks
//       covering the HC heads' Gn fp16 groups of the token
//   P   [16 tokens] int32 positions
template <int D, int B>
struct WarmRing {
  using G = MGeo<D, B>;
  static constexpr int kKChunk = G::kKChunkDims * B / 8;
  static constexpr int kKChunks = G::kKChunks;
  static constexpr int kVCopy = G::kVBytes < 4 ? 4 : G::kVBytes;
  static constexpr int kVChunk = kVCopy < 16 ? kVCopy : 16;
  static constexpr int kVChunks = kVCopy / kVChunk;
  static constexpr int kVOff = 2 * G::kKBytes * 32;           // within a warp's KV part
  static constexpr int kWarpKV = kVOff + 4 * kVCopy * 32;     // one warp's KV bytes per stage
  static constexpr int kScaleBytes = 4 * 16 * kSlotBytes;
  static_assert(kWarpKV % 16 == 0, "stages keep 16-byte alignment");
  __host__ __device__ static constexpr int StageBytes(int hc) { return hc * kWarpKV + kScaleBytes + 16 * 4; }
  // As many stages as fit the budget at 8 heads (8-bit codes: 2), at most kMaxStages.
  static constexpr int kStages = kRingBudget / StageBytes(kAkvAttnMmaMaxKvPerCta) < kMaxStages
                                     ? kRingBudget / StageBytes(kAkvAttnMmaMaxKvPerCta)
                                     : kMaxStages;
  static_assert(kStages >= 2, "the ring needs a stage to compute and one to fill");
  __host__ __device__ static constexpr int SmemBytes(int hc) { return kStages * StageBytes(hc); }
};

// Byte offset, inside a scale slot, of KV head kvh's group grp at warm row t
// (slots start at the 16-byte chunk holding the CTA's first head kvh0);
// base_mis = the array's address mod 16.
__device__ __forceinline__ int SlotOffset(int base_mis, const AttnArgs& a, int t, int kvh0, int kvh, int grp) {
  return ((base_mis + (t * a.num_kv_heads + kvh0) * a.groups * 2) & 15) + ((kvh - kvh0) * a.groups + grp) * 2;
}

__device__ __forceinline__ const uint16_t* ScaleArray(const AttnArgs& a, int arr) {
  return arr == 0 ? a.wks : (arr == 1 ? a.wkz : (arr == 2 ? a.wvs : a.wvz));
}

// Enqueues the copies of the warm block at row tb into stage st (all threads of the CTA).
template <int D, int B>
__device__ __forceinline__ void IssueWarm(const AttnArgs& a, int kvh0, int hc, int tb, int seg_e, uint8_t* st) {
  using G = MGeo<D, B>;
  using R = WarmRing<D, B>;
  constexpr int kCb = D * B / 8;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int kvh = kvh0 + warp;
  uint8_t* kv = st + warp * R::kWarpKV;
#pragma unroll
  for (int x = 0; x < 2; ++x) {
    const int t = tb + 8 * x + gid;
    const bool valid = t < seg_e;
    const uint8_t* row = a.warm_k + (valid ? t * a.num_kv_heads + kvh : 0) * kCb;
#pragma unroll
    for (int c = 0; c < R::kKChunks; ++c)  // chunk slot 4c + tig (KDim)
      CpAsync<R::kKChunk>(kv + ((x * R::kKChunks + c) * 32 + lane) * R::kKChunk, row + (4 * c + tig) * R::kKChunk,
                          valid);
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int t = tb + 8 * (u >> 1) + 2 * tig + (u & 1);
    const bool valid = t < seg_e;
    const int off = G::kVBytes < 4 ? (gid * G::kVBytes) & ~3 : gid * G::kVBytes;
    const uint8_t* src = a.warm_v + (valid ? t * a.num_kv_heads + kvh : 0) * kCb + off;
#pragma unroll
    for (int c = 0; c < R::kVChunks; ++c)
      CpAsync<R::kVChunk>(kv + R::kVOff + ((u * R::kVChunks + c) * 32 + lane) * R::kVChunk, src + c * R::kVChunk,
                          valid);
  }
  // Scale slots: the aligned 16-byte chunks over [head kvh0, head kvh0 + hc) of each
  // (array, token); a chunk holding a byte of the range is mapped memory.
  uint8_t* slots = st + hc * R::kWarpKV;
  const int span = hc * a.groups * 2;
  for (int i = threadIdx.x; i < 4 * 16; i += blockDim.x) {  // i = arr * 16 + j (no runtime division)
    const int arr = i >> 4, j = i & 15, t = tb + j;
    const bool valid = t < seg_e;
    const uintptr_t first =
        reinterpret_cast<uintptr_t>(ScaleArray(a, arr) + ((valid ? t : 0) * a.num_kv_heads + kvh0) * a.groups);
    const uintptr_t chunk = first & ~uintptr_t{15};
    for (int c = 0; c < kSlotChunks && chunk + 16 * c < first + span; ++c)
      CpAsync16(slots + i * kSlotBytes + 16 * c, reinterpret_cast<const void*>(chunk + 16 * c), valid);
  }
  if (threadIdx.x < 16) {
    const int t = tb + threadIdx.x;
    CpAsync<4>(slots + R::kScaleBytes + threadIdx.x * 4, a.warm_pos + (t < seg_e ? t : 0), t < seg_e);
  }
}

// This lane's part of the warm block at row tb from stage st (landed, after the barrier).
template <int D, int B, bool kCode>
__device__ __forceinline__ void ReadWarm(const AttnArgs& a, int kvh0, int hc, int tb, int seg_e, const uint8_t* st,
                                         Block<D, B, true, kCode>& blk) {
  using G = MGeo<D, B>;
  using R = WarmRing<D, B>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int kvh = kvh0 + warp;
  const uint8_t* kv = st + warp * R::kWarpKV;
#pragma unroll
  for (int x = 0; x < 2; ++x) {
#pragma unroll
    for (int c = 0; c < R::kKChunks; ++c)
      ChunkToWords<R::kKChunk>(kv + ((x * R::kKChunks + c) * 32 + lane) * R::kKChunk, blk.k[x] + c * R::kKChunk / 4);
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) {
#pragma unroll
    for (int c = 0; c < R::kVChunks; ++c)
      ChunkToWords<R::kVChunk>(kv + R::kVOff + ((u * R::kVChunks + c) * 32 + lane) * R::kVChunk,
                               blk.v[u] + c * R::kVChunk / 4);
    if constexpr (G::kVBytes < 4) blk.v[u][0] >>= ((gid * G::kVBytes) & 3) * 8;  // the lane's 2 bytes to the bottom
  }
  const uint8_t* slots = st + hc * R::kWarpKV;
  const int* ps = reinterpret_cast<const int*>(slots + R::kScaleBytes);
  const int grp_v = kCode ? 0 : gid * G::kVd / a.group_size;
  const auto at = [&](int arr, int j, int grp) {  // rows past the segment: IssueWarm zero-filled row 0's slot
    const int mis = static_cast<int>(reinterpret_cast<uintptr_t>(ScaleArray(a, arr)) & 15);
    const int off = SlotOffset(mis, a, tb + j < seg_e ? tb + j : 0, kvh0, kvh, grp);
    return *reinterpret_cast<const uint16_t*>(slots + (arr * 16 + j) * kSlotBytes + off);
  };
#pragma unroll
  for (int x = 0; x < 2; ++x) {
    const int j = 8 * x + gid;
#pragma unroll
    for (int c = 0; c < G::kKChunks; ++c) {
      const int grp = kCode ? 0 : KDim<D, B>(tig, c * G::kKChunkDims) / a.group_size;
      blk.ks[x][c] = at(0, j, grp), blk.kz[x][c] = at(1, j, grp);
    }
    blk.pos[x] = tb + j < seg_e ? ps[j] : INT_MAX;
    if constexpr (kCode) blk.vs[x] = at(2, j, 0), blk.vz[x] = at(3, j, 0);
  }
  if constexpr (!kCode) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int j = 8 * (u >> 1) + 2 * tig + (u & 1);
      blk.vs[u] = at(2, j, grp_v), blk.vz[u] = at(3, j, grp_v);
    }
  }
}

// The warm rows [seg_b, seg_e) through the ring; every warp of the CTA runs
// the same number of steps (the barrier in each).
template <int D, int B, bool kCode>
__device__ __forceinline__ void WarmSegment(const AttnArgs& a, int kvh0, int hc, int seg_b, int seg_e,
                                            const uint32_t* qa, const float* qsum, int qpos, uint8_t* ring,
                                            Softmax<D>& st) {
  using R = WarmRing<D, B>;
  const int n_blocks = seg_e > seg_b ? (seg_e - seg_b + 15) / 16 : 0;
  const int stage_bytes = R::StageBytes(hc);
#pragma unroll
  for (int s = 0; s < R::kStages - 1; ++s) {
    if (s < n_blocks) IssueWarm<D, B>(a, kvh0, hc, seg_b + 16 * s, seg_e, ring + s * stage_bytes);
    CpAsyncCommit();
  }
  for (int i = 0; i < n_blocks; ++i) {
    CpAsyncWait<R::kStages - 2>();  // this thread's copies of block i have landed
    // Every thread's copies of block i are visible, and every thread is done
    // reading block i - 1, whose stage the issue below refills.
    __syncthreads();
    const int ahead = i + R::kStages - 1;
    if (ahead < n_blocks)
      IssueWarm<D, B>(a, kvh0, hc, seg_b + 16 * ahead, seg_e, ring + (ahead % R::kStages) * stage_bytes);
    CpAsyncCommit();
    Block<D, B, true, kCode> blk;
    ReadWarm<D, B, kCode>(a, kvh0, hc, seg_b + 16 * i, seg_e, ring + (i % R::kStages) * stage_bytes, blk);
    Attend<kCode>(blk, qa, qsum, a.scale_log2, qpos, st);
  }
  CpAsyncWait<0>();
}

// Row `row` of a batched launch as a one-row launch over sequence s's tiers
// (akv_attention.h, batched decode).
template <int D>
__device__ __forceinline__ AttnArgs BatchRowArgs(const AttnArgs& a, const AkvAttnSeq& s, int row) {
  AttnArgs r = a;
  r.hot_k = s.tiers.hot_k, r.hot_v = s.tiers.hot_v, r.hot_pos = s.tiers.hot_pos;
  r.warm_k = s.tiers.warm_k, r.warm_v = s.tiers.warm_v, r.warm_pos = s.tiers.warm_pos;
  r.wks = s.tiers.warm_k_scale, r.wkz = s.tiers.warm_k_zero;
  r.wvs = s.tiers.warm_v_scale, r.wvz = s.tiers.warm_v_zero;
  r.counts = s.tiers.counts;
  r.q_pos = s.q_pos;
  r.hot_cap = s.hot_capacity, r.warm_cap = s.warm_capacity;
  const int64_t heads = static_cast<int64_t>(row) * a.num_heads;  // this row's first (row, head)
  r.q = static_cast<const __nv_bfloat16*>(a.q) + row * a.q_stride_m;
  r.out = static_cast<__nv_bfloat16*>(a.out) + heads * D;
  if (a.lse != nullptr) r.lse = a.lse + heads;
  if (a.num_splits > 1) {
    r.partial_out = a.partial_out + heads * a.num_splits * D;
    r.partial_lse = a.partial_lse + heads * a.num_splits;
  }
  r.num_rows = 1;
  return r;
}

// One decode row (M = 1) over a's tiers: split blockIdx.x, KV heads
// [blockIdx.y * hc, + hc), one warp each.
template <int D, int B, bool kCode>
__device__ __forceinline__ void MmaDecode(const AttnArgs& a) {
  using G = MGeo<D, B>;
  extern __shared__ uint4 akv_mma_smem[];  // WarmRing<D, B>::SmemBytes(hc)
  const int hc = blockDim.x / 32, split = blockIdx.x, kvh0 = blockIdx.y * hc;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  const int kvh = kvh0 + warp;
  const int n_hot = min(max(a.counts[kAkvNHot], 0), a.hot_cap);
  const int n_warm = min(max(a.counts[kAkvNWarm], 0), a.warm_cap);
  int begin = 0, end = 0;
  AkvAttentionSplitRange(n_hot, n_warm, a.num_splits, split, &begin, &end);
  const int qpos = __ldg(a.q_pos);

  // B fragment of q^T (column gid = query head kvh * G + gid; zero past G), in
  // PairLo order over the lane's KDim dims; qsum[e] = sum of head 2tig + e's fp16 q.
  uint32_t qa[G::kPairsK];
  float qsum[2];
  {
    float qf[G::kKd];
#pragma unroll
    for (int e = 0; e < G::kKd; ++e) qf[e] = 0.0f;
    if (gid < a.group) {
      const __nv_bfloat16* qp = static_cast<const __nv_bfloat16*>(a.q) + (kvh * a.group + gid) * a.q_stride_h;
#pragma unroll
      for (int e = 0; e < G::kKd; e += 8)
        Vec16<__nv_bfloat16>::Load(__ldg(reinterpret_cast<const uint4*>(qp + KDim<D, B>(tig, e))), qf + e);
    }
    float part = 0.0f;
#pragma unroll
    for (int p = 0; p < G::kPairsK; ++p) {
      qa[p] = PackF16(qf[PairLo<B>(p)], qf[PairHi<B>(p)]);
      const float2 r = __half22float2(U2H(qa[p]));
      part += r.x + r.y;
    }
    part += __shfl_xor_sync(0xffffffffu, part, 1);
    part += __shfl_xor_sync(0xffffffffu, part, 2);  // head gid's sum on its 4 lanes
    qsum[0] = __shfl_sync(0xffffffffu, part, 8 * tig);
    qsum[1] = __shfl_sync(0xffffffffu, part, 8 * tig + 4);
  }

  Softmax<D> st;
#pragma unroll
  for (int e = 0; e < 2; ++e) st.m[e] = kNegInf, st.l[e] = 0.0f, st.zsum[e] = 0.0f;
#pragma unroll
  for (int i = 0; i < D / 16; ++i) st.acc[i][0] = st.acc[i][1] = st.acc[i][2] = st.acc[i][3] = 0.0f;
  // Hot rows: this warp's head only, plain loads.
  const int hot_e = min(end, n_hot);
  for (int tb = begin; tb < hot_e; tb += 16) {
    Block<D, B, false, false> blk;
    blk.Load(a, kvh, tb, hot_e, gid, tig);
    Attend<kCode>(blk, qa, qsum, a.scale_log2, qpos, st);
  }
  WarmSegment<D, B, kCode>(a, kvh0, hc, max(begin, n_hot) - n_hot, max(end - n_hot, 0), qa, qsum, qpos,
                           reinterpret_cast<uint8_t*>(akv_mma_smem), st);
#pragma unroll
  for (int e = 0; e < 2; ++e) {  // sums over the 8 lanes (gid) of a tig
#pragma unroll
    for (int off = 4; off < 32; off *= 2) {
      st.l[e] += __shfl_xor_sync(0xffffffffu, st.l[e], off);
      if constexpr (kCode) st.zsum[e] += __shfl_xor_sync(0xffffffffu, st.zsum[e], off);
    }
  }

  // Heads 2tig + e, dims [gid * D/8, (gid + 1) * D/8): acc[i][e] dim + 2i, acc[i][2 + e] dim + 2i + 1.
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int r = 2 * tig + e;
    if (r >= a.group) continue;
    const int h = kvh * a.group + r;  // M = 1: output row h
    const float inv = st.l[e] > 0.0f ? 1.0f / st.l[e] : 0.0f;
    constexpr float kUnscale = kCode ? 1.0f / static_cast<float>(1 << (B - 1)) : 1.0f;  // Attend's kScaleP
    float o[G::kVd];
#pragma unroll
    for (int i = 0; i < D / 16; ++i) {
      o[2 * i] = fmaf(st.acc[i][e], kUnscale, st.zsum[e]) * inv;
      o[2 * i + 1] = fmaf(st.acc[i][2 + e], kUnscale, st.zsum[e]) * inv;
    }
    const float lse = st.l[e] > 0.0f ? (st.m[e] + __log2f(st.l[e])) * kLn2 : kNegInf;
    if (a.num_splits == 1) {
      __nv_bfloat16* op = static_cast<__nv_bfloat16*>(a.out) + static_cast<int64_t>(h) * D + gid * G::kVd;
#pragma unroll
      for (int j = 0; j < G::kVd; j += 8) *reinterpret_cast<uint4*>(op + j) = Vec16<__nv_bfloat16>::Store(o + j);
      if (gid == 0 && a.lse != nullptr) a.lse[h] = lse;
    } else {
      const int64_t prow = static_cast<int64_t>(h) * a.num_splits + split;
      float* pp = a.partial_out + prow * D + gid * G::kVd;
#pragma unroll
      for (int j = 0; j < G::kVd; j += 4)
        *reinterpret_cast<float4*>(pp + j) = make_float4(o[j], o[j + 1], o[j + 2], o[j + 3]);
      if (gid == 0) a.partial_lse[prow] = lse;
    }
  }
}

template <int D, int B, bool kCode>
__global__ void __launch_bounds__(kAkvAttnMmaMaxKvPerCta * 32, 2) AkvAttentionMmaKernel(const AttnArgs a) {
  MmaDecode<D, B, kCode>(a);
}

// Batched decode: grid.z = the batch's rows, row z over *rows.seq[z]. Thread
// 0 builds the row's arguments in shared memory (one round trip for the
// descriptor) and the CTA reads them there. __grid_constant__: the row
// pointers are read in parameter space, not copied per thread.
template <int D, int B, bool kCode>
__global__ void __launch_bounds__(kAkvAttnMmaMaxKvPerCta * 32, 2)
    AkvAttentionMmaBatchKernel(const AttnArgs a, const __grid_constant__ AkvAttnBatch rows) {
  __shared__ alignas(16) unsigned char row_args[sizeof(AttnArgs)];  // no constructor runs for __shared__
  AttnArgs* r = reinterpret_cast<AttnArgs*>(row_args);
  if (threadIdx.x == 0) *r = BatchRowArgs<D>(a, *rows.seq[blockIdx.z], blockIdx.z);
  __syncthreads();
  MmaDecode<D, B, kCode>(*r);
}

template <int D, int B, bool kCode>
cudaError_t LaunchMmaKernel(const AttnArgs& a, const AkvAttnBatch* batch, cudaStream_t stream) {
  const int hc = AkvMmaKvHeadsPerCta(a.num_kv_heads);
  const dim3 grid(a.num_splits, a.num_kv_heads / hc, batch != nullptr ? a.num_rows : 1);
  const int smem = WarmRing<D, B>::SmemBytes(hc);
  constexpr int kSmemMax = WarmRing<D, B>::SmemBytes(kAkvAttnMmaMaxKvPerCta);
  if (batch != nullptr) {
    constexpr auto kKernel = AkvAttentionMmaBatchKernel<D, B, kCode>;
    KV_CUDA_CHECK(AllowDynamicSmemOnce<kKernel>(kSmemMax));  // above the 48 KB default
    kKernel<<<grid, hc * 32, smem, stream>>>(a, *batch);
  } else {
    constexpr auto kKernel = AkvAttentionMmaKernel<D, B, kCode>;
    KV_CUDA_CHECK(AllowDynamicSmemOnce<kKernel>(kSmemMax));
    kKernel<<<grid, hc * 32, smem, stream>>>(a);
  }
  KV_CUDA_CHECK(cudaGetLastError());
  return cudaSuccess;
}

template <int D, int B>
cudaError_t LaunchMmaBits(const AttnArgs& a, const AkvAttnBatch* batch, cudaStream_t stream) {
  const cudaError_t e = a.groups == 1 ? LaunchMmaKernel<D, B, true>(a, batch, stream)
                                      : LaunchMmaKernel<D, B, false>(a, batch, stream);
  if (e != cudaSuccess) return e;
  if (a.num_splits > 1) {  // batched: the M rows' heads in one merge
    const int64_t rows = static_cast<int64_t>(batch != nullptr ? a.num_rows : 1) * a.num_heads;
    KV_CUDA_CHECK((akv_attn_detail::LaunchAkvMerge<__nv_bfloat16, D>(a, rows, stream)));
  }
  return cudaSuccess;
}

// The tensor-core path serves this launch (see AkvAttnPath).
// Offsets inside a layer's tiers are 32-bit in the kernel. Batched: the
// launch layout's capacities bound every row's; the caller vouches for alignment.
inline bool MmaApplies(const AttnArgs& a, const AkvAttnBatch* batch, int head_dim) {
  const auto aligned16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const int64_t rows = std::max(a.hot_cap, a.warm_cap);
  const bool one_row = batch != nullptr || (a.num_rows == 1 && aligned16(a.warm_k) && aligned16(a.warm_v));
  return one_row && a.group <= kAkvAttnMmaMaxGroup && rows * a.num_kv_heads * head_dim * 2 < (int64_t{1} << 31);
}

template <int D>
cudaError_t LaunchMma(const AttnArgs& a, const AkvAttnBatch* batch, int bits, cudaStream_t stream) {
  switch (bits) {
    case 2: return LaunchMmaBits<D, 2>(a, batch, stream);
    case 4: return LaunchMmaBits<D, 4>(a, batch, stream);
    case 8: return LaunchMmaBits<D, 8>(a, batch, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kvstream::akv_mma_detail
