// Kernel bodies of the dense paged decode attention (see dense_decode.h for the
// legend and layouts). Included by the per-(dtype, head_dim) instantiation
// units under inst/ only.
//
// Mapping
//   grid  (S, Hkv * G/GC, B): one CTA per (sequence, KV head, group chunk, split);
//         the CTA serves the GC query heads that share the KV head, so each K/V
//         byte is read once per step.
//   block kWarps warps. The split's tokens are dealt to the warps in steps of
//         kTokensPerIter, round robin (warp w takes steps w, w+kWarps, ...).
//   warp  a 16-byte row slot = kVec elements of one token's K (or V) row; a
//         token row of D elements takes kLanesPerRow lanes, so a warp covers
//         kRowsPerWarp tokens per row slot and kRowsPerLane slots per step.
// Loads: each lane cp.asyncs its own 2*kRowsPerLane 16-byte slots of a step into
//   its warp's shared-memory ring, kStages-1 steps ahead of the one it computes,
//   and later reads back exactly those bytes: no barrier in the main loop, and
//   about 2*kRowsPerLane*512 B * (kStages-1) in flight per warp. Out-of-range
//   tokens are zero-filled by the copy (never read) and masked to -inf.
// Fused append (k_new): the CTAs whose split holds token T-1 first store that
//   row from k_new/v_new into the pool (every head chunk stores the same
//   bytes), then read it back like any other row: a barrier orders the stores
//   before their own copies, and the main loop stays free of per-token selects.
// Pages: when P is a multiple of kTokensPerIter, a warp step's tokens lie in
//   one page (steps start at multiples of it), so a step costs one block-table
//   load instead of one per row slot.
// Fused merge (split_counters): after writing its partials, each CTA bumps its
//   (sequence, head chunk) counter; the last one merges (MergeColumns, as the
//   merge kernel does) and resets the counter to zero.
// Math: q is pre-scaled by scale*log2(e), scores live in the log2 domain, online
//   softmax per lane row (m, l, acc in fp32), rows merged by shuffles, warps
//   merged through shared memory (reusing the ring), one 16-byte store per lane.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/cp_async.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/common/fast_divmod.h"
#include "kernels/common/pdl.cuh"
#include "kernels/cuda_check.h"
#include "kernels/dense/dense_decode.h"

namespace kvstream::dense_decode_detail {

// KVSTREAM_DENSE_DECODE_WARPS / _STAGES: compile-time overrides for A/B timing
// in the bench only (the planner and tests assume the defaults).
#ifndef KVSTREAM_DENSE_DECODE_WARPS
#define KVSTREAM_DENSE_DECODE_WARPS 4
#endif
#ifndef KVSTREAM_DENSE_DECODE_STAGES
#define KVSTREAM_DENSE_DECODE_STAGES 3
#endif
constexpr int kWarps = KVSTREAM_DENSE_DECODE_WARPS;  // warps per CTA
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerLane = 4;  // 16-byte K slots (and as many V slots) per lane per step
constexpr int kStages = KVSTREAM_DENSE_DECODE_STAGES;  // ring depth per warp (steps in flight = kStages - 1)
// Resident warps per SM the register budget is sized for: 16 (4 CTAs of 4
// warps, <= 128 registers) for GC <= 4, 8 for the larger chunks.
constexpr int MinCtasPerSm(int gc) { return ((gc <= 4 ? 16 : 8) + kWarps - 1) / kWarps; }
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -__builtin_huge_valf();

template <class T, int D, int GC>
struct Geometry {
  static constexpr int kVec = Vec16<T>::kN;                  // elements per 16 bytes
  static constexpr int kLanesPerRow = D / kVec;              // lanes holding one token row
  static constexpr int kRowsPerWarp = 32 / kLanesPerRow;     // tokens per row slot
  static constexpr int kTokensPerIter = kRowsPerLane * kRowsPerWarp;
  static constexpr int kSlotsPerStage = 2 * kRowsPerLane * 32;  // uint4 per warp per stage (K then V)
  static constexpr int kWarpSlots = kStages * kSlotsPerStage;
  static constexpr int kSmemBytes = kWarps * kWarpSlots * 16;
  static constexpr int kStateFloats = GC * D + 2 * GC;        // acc, m, l of one warp
  static_assert(D % kVec == 0 && kLanesPerRow >= 1 && kLanesPerRow <= 32 && 32 % kLanesPerRow == 0,
                "a token row must split evenly over a power-of-two number of lanes");
  static_assert(kDenseDecodeSplitAlign % kTokensPerIter == 0,
                "split boundaries must fall on step boundaries");
  static_assert(kStateFloats * 4 <= kWarpSlots * 16, "a warp's softmax state must fit in its ring");
  static_assert(GC >= 1 && GC <= kDenseDecodeMaxGroupChunk, "group chunk out of range");
  static_assert(kThreads >= 2 * kLanesPerRow, "the fused append stores a K and a V row with one thread per slot");
};

// Everything the kernels read, flattened from DenseDecodeParams by the launcher.
struct KernelArgs {
  const void* q = nullptr;              // [B, H, D]
  void* k_pool = nullptr;               // [NB, Hkv, P, D]; written at token T-1 with k_new
  void* v_pool = nullptr;               // [NB, Hkv, P, D]
  const int32_t* block_table = nullptr; // [B, MB]
  const int32_t* seq_lens = nullptr;    // [B]
  void* out = nullptr;                  // [B, H, D]
  float* partial_out = nullptr;         // [B, H, S, D]
  float* partial_lse = nullptr;         // [B, H, S]
  const void* k_new = nullptr;          // [B, Hkv, D] row stride new_stride_b, or nullptr
  const void* v_new = nullptr;          // [B, Hkv, D] as k_new
  int* split_counters = nullptr;        // [B, Hkv * chunks] zeros, or nullptr
  int64_t new_stride_b = 0;                    // elements between k_new rows
  int64_t q_stride_b = 0, q_stride_h = 0;      // elements
  int64_t out_stride_b = 0, out_stride_h = 0;  // elements
  int64_t page_stride = 0;  // Hkv*P*D elements between pages
  int64_t head_stride = 0;  // P*D elements between KV heads of a page
  int num_heads = 0;        // H
  int group = 0;            // G
  int chunks = 0;           // G / GC
  int max_blocks_per_seq = 0;
  int max_tokens = 0;       // MB*P: live lengths are clamped to it
  int num_splits = 1;       // S
  int batch = 0;            // B
  float scale_log2 = 0.0f;  // scale * log2(e)
  bool step_in_page = false;  // P % kTokensPerIter == 0: one page lookup per warp step
  FastDivmod page_div;      // divides by P
};

// Merges the S partials of row (b, h) by log-sum-exp and stores them to out.
// Called by all 32 lanes of a warp for the same row; lane owns columns
// [lane * kPer, (lane + 1) * kPer). The split weights are computed once, lane
// s % 32 holding split s's, and broadcast by shuffles, so no lane waits on S
// dependent loads (the separate merge kernel got ~4 us a layer faster this way
// at S = 33, (B=1, 32K) on the H100). Partials are read through L2 (ld.cg): in
// the fused merge other CTAs of this grid wrote them.
template <class T, int D, int kPer>
__device__ __forceinline__ void MergeColumns(const KernelArgs& a, int b, int h, int lane) {
  static_assert(kPer == 2 || kPer == 4, "2 or 4 columns per lane");
  constexpr int kSlots = kDenseDecodeMaxSplits / 32;
  const int S = a.num_splits;
  const int64_t rowi = static_cast<int64_t>(b) * a.num_heads + h;
  const float* lse = a.partial_lse + rowi * S;
  const float* part = a.partial_out + rowi * S * D + lane * kPer;
  float w[kSlots], mx = kNegInf;
#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    w[j] = lane + 32 * j < S ? __ldcg(lse + lane + 32 * j) : kNegInf;
    mx = fmaxf(mx, w[j]);
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    w[j] = w[j] == kNegInf ? 0.0f : FastExp2((w[j] - mx) * kLog2e);
    sum += w[j];
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  // Partials in batches of kBatch splits: all loads of a batch are issued (predicated
  // past S) before any is used, so a batch costs one L2 round trip, not kBatch.
  // NOTE(dense): a load after an early `break` cannot be hoisted, and the S loads
  // went one round trip each (~5 us at S = 33 on the H100).
  constexpr int kBatch = 8;
  float o[kPer] = {};
#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    if (32 * j >= S) break;
#pragma unroll 1
    for (int t0 = 0; t0 < 32 && 32 * j + t0 < S; t0 += kBatch) {
      float x[kBatch][kPer];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int s = 32 * j + t0 + u;
        const float* src = part + static_cast<int64_t>(s) * D;
        if constexpr (kPer == 4) {
          const float4 v = s < S ? __ldcg(reinterpret_cast<const float4*>(src)) : make_float4(0.f, 0.f, 0.f, 0.f);
          x[u][0] = v.x; x[u][1] = v.y; x[u][2] = v.z; x[u][3] = v.w;
        } else {
          const float2 v = s < S ? __ldcg(reinterpret_cast<const float2*>(src)) : make_float2(0.f, 0.f);
          x[u][0] = v.x; x[u][1] = v.y;
        }
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const float ws = __shfl_sync(0xffffffffu, w[j], t0 + u);  // 0 past S (w = 0 there)
#pragma unroll
        for (int e = 0; e < kPer; ++e) o[e] += ws * x[u][e];
      }
    }
  }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  T* op = static_cast<T*>(a.out) + b * a.out_stride_b + h * a.out_stride_h + lane * kPer;
#pragma unroll
  for (int e = 0; e < kPer; ++e) op[e] = T(o[e] * inv);  // bf16/fp16: round to nearest even
}

template <class T, int D, int GC>
__global__ void __launch_bounds__(kThreads, MinCtasPerSm(GC)) DenseDecodeKernel(const KernelArgs a) {
  using Geo = Geometry<T, D, GC>;
  constexpr int kVec = Geo::kVec, kLpr = Geo::kLanesPerRow, kRpw = Geo::kRowsPerWarp;
  constexpr int kTpi = Geo::kTokensPerIter;
  extern __shared__ __align__(16) uint4 smem[];

  // Let the kernel after (merge or output projection, programmatic dependents)
  // be scheduled now; it still waits for this whole grid before reading
  // anything. NOTE(dense): here, not after the KV loop: there the separate
  // merge's launch latency showed again (H100 bench, (1, 4K): 34.5 vs 18.4 us).
  PdlLaunchDependents();
  const int split = blockIdx.x;
  const int kvh = blockIdx.y / a.chunks;
  const int h0 = kvh * a.group + (blockIdx.y % a.chunks) * GC;  // first query head of this CTA
  const int b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = lane / kLpr, col = lane % kLpr;

  const int t_len = min(max(__ldg(a.seq_lens + b), 0), a.max_tokens);
  int begin = 0, end = 0;
  DenseDecodeSplitRange(t_len, a.num_splits, split, &begin, &end);

  uint4* ring = smem + warp * Geo::kWarpSlots;  // [kStages][2 (K,V)][kRowsPerLane][32 lanes]
  const int32_t* table = a.block_table + static_cast<int64_t>(b) * a.max_blocks_per_seq;
  T* const k_base = static_cast<T*>(a.k_pool) + kvh * a.head_stride + col * kVec;
  T* const v_base = static_cast<T*>(a.v_pool) + kvh * a.head_stride + col * kVec;

  // Fused append: this split holds the new token T-1. Threads [0, kLpr) store
  // its K row, threads [kLpr, 2 kLpr) its V row; the barrier makes the stores
  // visible to the copies below (CTA scope, both through L2). NOTE(dense): with
  // more than one head chunk (G > 8) every chunk's CTA stores the same bytes,
  // which may overlap another chunk's copies of them: a race in the memory
  // model's terms, harmless in effect (identical values).
  if (a.k_new != nullptr && t_len > 0 && end == t_len && begin < end) {
    if (threadIdx.x < 2 * kLpr) {  // column slot `col` (kLpr divides 32)
      const bool is_v = threadIdx.x >= kLpr;
      uint32_t page_idx = 0, off = 0;
      a.page_div.DivMod(static_cast<uint32_t>(t_len - 1), &page_idx, &off);
      const int64_t elem = __ldg(table + page_idx) * a.page_stride + static_cast<int64_t>(off) * D;
      const int64_t src = static_cast<int64_t>(b) * a.new_stride_b + kvh * D + col * kVec;
      const T* from = static_cast<const T*>(is_v ? a.v_new : a.k_new) + src;
      *reinterpret_cast<uint4*>((is_v ? v_base : k_base) + elem) = __ldg(reinterpret_cast<const uint4*>(from));
    }
    __syncthreads();
  }

  const int span = end - begin;
  const int n_it = span > warp * kTpi ? (span - warp * kTpi + kWarps * kTpi - 1) / (kWarps * kTpi) : 0;

  // Enqueue step `it` into ring stage `stage`: this lane's K and V slots. The
  // step's first token is a multiple of kTpi and below `end` (it < n_it).
  auto issue = [&](int it, int stage) {
    const int step0 = begin + (it * kWarps + warp) * kTpi;
    int64_t step_elem = 0;  // pool offset of row (step0 + row) when the step is in one page
    if (a.step_in_page) {
      uint32_t page_idx = 0, off = 0;
      a.page_div.DivMod(static_cast<uint32_t>(step0), &page_idx, &off);
      step_elem = __ldg(table + page_idx) * a.page_stride + static_cast<int64_t>(off + row) * D;
    }
#pragma unroll
    for (int u = 0; u < kRowsPerLane; ++u) {
      const int t = step0 + row + u * kRpw;
      const bool valid = t < end;
      int64_t elem = step_elem + u * kRpw * D;
      if (!a.step_in_page) {
        uint32_t page_idx = 0, off = 0;
        a.page_div.DivMod(valid ? static_cast<uint32_t>(t) : 0u, &page_idx, &off);
        const int64_t page = valid ? __ldg(table + page_idx) : 0;
        elem = page * a.page_stride + static_cast<int64_t>(off) * D;
      }
      uint4* slot = ring + (stage * 2 * kRowsPerLane + u) * 32 + lane;
      CpAsync16(slot, k_base + elem, valid);
      CpAsync16(slot + kRowsPerLane * 32, v_base + elem, valid);
    }
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_it) issue(s, s);
    CpAsyncCommit();
  }

  // q rows of this CTA's heads, this lane's kVec columns, pre-scaled (log2 domain).
  float q[GC][kVec];
#pragma unroll
  for (int g = 0; g < GC; ++g) {
    const T* qp = static_cast<const T*>(a.q) + b * a.q_stride_b + (h0 + g) * a.q_stride_h + col * kVec;
    Vec16<T>::Load(__ldg(reinterpret_cast<const uint4*>(qp)), q[g]);
#pragma unroll
    for (int e = 0; e < kVec; ++e) q[g][e] *= a.scale_log2;
  }

  float m[GC], l[GC], acc[GC][kVec];
#pragma unroll
  for (int g = 0; g < GC; ++g) {
    m[g] = kNegInf;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc[g][e] = 0.0f;
  }

  for (int it = 0; it < n_it; ++it) {
    const int ahead = it + kStages - 1;
    // NOTE(dense): stage `ahead % kStages` is the one read in step it-1; the
    // warp barrier orders those shared reads before the async copies refill it.
    __syncwarp();
    if (ahead < n_it) issue(ahead, ahead % kStages);
    CpAsyncCommit();
    CpAsyncWait<kStages - 1>();  // this lane's copies of step `it` have landed

    const uint4* k_slots = ring + (it % kStages) * 2 * kRowsPerLane * 32 + lane;
    const uint4* v_slots = k_slots + kRowsPerLane * 32;
    const int tok0 = begin + (it * kWarps + warp) * kTpi + row;

    // Scores s[u][g] = q_g . k_u over this lane's columns, then over the row's lanes.
    float s[kRowsPerLane][GC];
#pragma unroll
    for (int u = 0; u < kRowsPerLane; ++u) {
      float kf[kVec];
      Vec16<T>::Load(k_slots[u * 32], kf);
#pragma unroll
      for (int g = 0; g < GC; ++g) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < kVec; ++e) dot = fmaf(q[g][e], kf[e], dot);
        s[u][g] = dot;
      }
    }
#pragma unroll
    for (int off = kLpr / 2; off > 0; off /= 2) {
#pragma unroll
      for (int u = 0; u < kRowsPerLane; ++u) {
#pragma unroll
        for (int g = 0; g < GC; ++g) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], off);
      }
    }
#pragma unroll
    for (int u = 0; u < kRowsPerLane; ++u) {
      if (tok0 + u * kRpw >= end) {
#pragma unroll
        for (int g = 0; g < GC; ++g) s[u][g] = kNegInf;
      }
    }

    // Online softmax update; s becomes the weights p.
#pragma unroll
    for (int g = 0; g < GC; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < kRowsPerLane; ++u) mx = fmaxf(mx, s[u][g]);
      const float m_use = mx == kNegInf ? 0.0f : mx;  // all masked so far: keep weights 0, no NaN
      const float corr = FastExp2(m[g] - m_use);
      m[g] = mx;
      l[g] *= corr;
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[g][e] *= corr;
#pragma unroll
      for (int u = 0; u < kRowsPerLane; ++u) {
        s[u][g] = FastExp2(s[u][g] - m_use);
        l[g] += s[u][g];
      }
    }
#pragma unroll
    for (int u = 0; u < kRowsPerLane; ++u) {
      float vf[kVec];
      Vec16<T>::Load(v_slots[u * 32], vf);
#pragma unroll
      for (int g = 0; g < GC; ++g) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[g][e] = fmaf(s[u][g], vf[e], acc[g][e]);
      }
    }
  }
  CpAsyncWait<0>();

  // Merge the kRowsPerWarp row states of the warp (lanes kLpr, 2*kLpr, ... apart).
#pragma unroll
  for (int off = kLpr; off < 32; off *= 2) {
#pragma unroll
    for (int g = 0; g < GC; ++g) {
      const float m_o = __shfl_xor_sync(0xffffffffu, m[g], off);
      const float l_o = __shfl_xor_sync(0xffffffffu, l[g], off);
      const float mx = fmaxf(m[g], m_o);
      const float m_use = mx == kNegInf ? 0.0f : mx;
      const float c_self = FastExp2(m[g] - m_use), c_other = FastExp2(m_o - m_use);
      l[g] = l[g] * c_self + l_o * c_other;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        const float acc_o = __shfl_xor_sync(0xffffffffu, acc[g][e], off);
        acc[g][e] = acc[g][e] * c_self + acc_o * c_other;
      }
      m[g] = mx;
    }
  }

  // Warp state -> this warp's ring (other lanes may still be reading their slots).
  __syncwarp();
  float* state = reinterpret_cast<float*>(ring);  // [GC][D] acc, then m[GC], l[GC]
  if (row == 0) {
#pragma unroll
    for (int g = 0; g < GC; ++g) {
#pragma unroll
      for (int e = 0; e < kVec; e += 4) {
        *reinterpret_cast<float4*>(state + g * D + col * kVec + e) =
            make_float4(acc[g][e], acc[g][e + 1], acc[g][e + 2], acc[g][e + 3]);
      }
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < GC; ++g) {
      state[GC * D + g] = m[g];
      state[GC * D + GC + g] = l[g];
    }
  }
  __syncthreads();

  // Merge the warps; one thread per (head, 16-byte column slot).
  const float* states = reinterpret_cast<const float*>(smem);
  constexpr int kWarpStride = Geo::kWarpSlots * 4;  // floats between warp regions
  for (int i = threadIdx.x; i < GC * kLpr; i += kThreads) {
    const int g = i / kLpr, c = i % kLpr;
    float mx = kNegInf;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, states[w * kWarpStride + GC * D + g]);
    const float m_use = mx == kNegInf ? 0.0f : mx;
    float sum = 0.0f, o[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e) o[e] = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float* st = states + w * kWarpStride;
      const float cw = FastExp2(st[GC * D + g] - m_use);
      sum += st[GC * D + GC + g] * cw;
#pragma unroll
      for (int e = 0; e < kVec; ++e) o[e] += cw * st[g * D + c * kVec + e];
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
    for (int e = 0; e < kVec; ++e) o[e] *= inv;
    const int h = h0 + g;
    if (a.num_splits == 1) {
      T* op = static_cast<T*>(a.out) + b * a.out_stride_b + h * a.out_stride_h + c * kVec;
      *reinterpret_cast<uint4*>(op) = Vec16<T>::Store(o);
    } else {
      const int64_t prow = (static_cast<int64_t>(b) * a.num_heads + h) * a.num_splits + split;
      float* pp = a.partial_out + prow * D + c * kVec;
#pragma unroll
      for (int e = 0; e < kVec; e += 4) {
        *reinterpret_cast<float4*>(pp + e) = make_float4(o[e], o[e + 1], o[e + 2], o[e + 3]);
      }
      if (c == 0) a.partial_lse[prow] = sum > 0.0f ? (mx + __log2f(sum)) * kLn2 : kNegInf;
    }
  }
  if (a.num_splits == 1 || a.split_counters == nullptr) return;

  // Fused merge: the last CTA of this (sequence, head chunk) to get here
  // merges. Each thread fences its own partial writes before the count (the
  // threadfence-reduction pattern of the CUDA programming guide). The flag
  // reuses the ring (static shared memory would push the CTA past 48 KB).
  int* is_last = reinterpret_cast<int*>(smem);
  __threadfence();
  __syncthreads();  // also: every thread is done reading the warp states
  if (threadIdx.x == 0) {
    int* counter = a.split_counters + static_cast<int64_t>(b) * gridDim.y + blockIdx.y;
    *is_last = atomicAdd(counter, 1) == a.num_splits - 1;
    if (*is_last) *counter = 0;  // every other CTA has counted: ready for the next launch
  }
  __syncthreads();
  if (!*is_last) return;
  __threadfence();
  constexpr int kPer = D / 32;
  for (int i = threadIdx.x; i < GC * 32; i += kThreads) {
    MergeColumns<T, D, kPer>(a, b, h0 + i / 32, i % 32);  // a warp per head: uniform trip count
  }
}

// Merges S partial outputs of each (b, h) by log-sum-exp. One warp per row;
// lane i owns columns [i*D/32, (i+1)*D/32). Launched as a programmatic
// dependent of the attention kernel, so its launch latency overlaps that grid.
template <class T, int D>
// NOTE(dense): (128, 1), not (128): with the bare bound ptxas (nvcc 13.0,
// sm_90a) kept this kernel at 32 registers and spilled 8-16 bytes; with the
// minimum-blocks hint it takes 71 and spills none.
__global__ void __launch_bounds__(128, 1) DenseDecodeMergeKernel(const KernelArgs a) {
  constexpr int kPer = D / 32;
  static_assert(D % 32 == 0 && (kPer == 2 || kPer == 4), "merge handles D = 64 or 128");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Waits for the attention grid to finish and its writes to be visible (a
  // no-op when launched without programmatic dependence), then lets the
  // output projection's GEMV (also a programmatic dependent) start early.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
  const int rowi = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (rowi >= a.batch * a.num_heads) return;
  MergeColumns<T, D, kPer>(a, rowi / a.num_heads, rowi % a.num_heads, lane);
}

}  // namespace kvstream::dense_decode_detail
