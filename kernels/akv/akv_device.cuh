// Device helpers shared by the AKV kernels: element conversion, the §6
// quantizer (bit-exact with akv_quant.h's host math: explicit _rn arithmetic,
// so no contraction or fast-math can change a code), code unpacking, and the
// block-wide pieces of select/migrate (counting, ordered emit, compaction).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/akv/akv_layout.h"
#include "kernels/common/device_math.cuh"

namespace kvstream::akv_detail {

using ::kvstream::FromF;  // element conversions: kernels/common/device_math.cuh
using ::kvstream::ToF;

__device__ __forceinline__ float HalfBitsToF(uint16_t b) { return __half2float(__ushort_as_half(b)); }

// fp16 bits of v (nearest even), +-inf saturated to +-65504 (AkvHalfSat).
__device__ __forceinline__ uint16_t HalfSat(float v, bool* sat) {
  uint16_t b = __half_as_ushort(__float2half_rn(v));
  if ((b & 0x7fffu) == 0x7c00u) {
    *sat = true;
    b = static_cast<uint16_t>((b & 0x8000u) | 0x7bffu);
  }
  return b;
}

// The group's fp16 (scale, zero) bits from its min and max (akv_quant.h
// rule): zero = fp16(lo), scale = fp16((hi - lo) / (2^bits - 1)), -0 read
// as +0 as on the host; *sat set if either saturated.
__device__ __forceinline__ void GroupParams(float lo, float hi, int bits, uint16_t* scale, uint16_t* zero,
                                            bool* sat) {
  lo = __fadd_rn(lo, 0.0f);  // -0 -> +0, as the host
  hi = __fadd_rn(hi, 0.0f);
  const float levels = static_cast<float>((1 << bits) - 1);
  *zero = HalfSat(lo, sat);
  *scale = HalfSat(__fdiv_rn(__fsub_rn(hi, lo), levels), sat);
}

// The code of x in a group of (sc, mn) = the decoded params: nearest level,
// clamped to [0, 2^bits - 1]; 0 for a constant group (sc == 0).
__device__ __forceinline__ uint32_t QuantCode(float x, float sc, float mn, int bits) {
  if (!(sc > 0.0f)) return 0;
  const float r = rintf(__fdiv_rn(__fsub_rn(x, mn), sc));
  return static_cast<uint32_t>(fminf(fmaxf(r, 0.0f), static_cast<float>((1 << bits) - 1)));
}

// Quantizes g consecutive elements x[0..g) (akv_quant.h rule) into g*bits/8
// bytes at codes (4-byte aligned) and fp16 scale/zero; returns saturation.
template <class T>
__device__ bool QuantizeGroup(const T* x, int g, int bits, uint8_t* codes, uint16_t* scale, uint16_t* zero) {
  float lo = ToF(x[0]), hi = lo;
  for (int i = 1; i < g; ++i) {
    const float v = ToF(x[i]);
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  bool sat = false;
  GroupParams(lo, hi, bits, scale, zero, &sat);
  const float mn = HalfBitsToF(*zero), sc = HalfBitsToF(*scale);
  const int per = 32 / bits;
  uint32_t* words = reinterpret_cast<uint32_t*>(codes);
  for (int w = 0; w < g / per; ++w) {
    uint32_t word = 0;
    for (int e = 0; e < per; ++e) word |= QuantCode(ToF(x[w * per + e]), sc, mn, bits) << (e * bits);
    words[w] = word;
  }
  return sat;
}

// x^ = code * scale + zero; the product is exact, so fmaf == host mul + add.
__device__ __forceinline__ float Dequant(uint32_t code, float sc, float mn) {
  return fmaf(static_cast<float>(code), sc, mn);
}

// Loads N bytes (1, 2, 4, 8; naturally aligned) as a little-endian word.
template <int N>
__device__ __forceinline__ uint64_t LoadBytes(const uint8_t* p) {
  if constexpr (N == 1) return *p;
  if constexpr (N == 2) return *reinterpret_cast<const uint16_t*>(p);
  if constexpr (N == 4) return *reinterpret_cast<const uint32_t*>(p);
  if constexpr (N == 8) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    return static_cast<uint64_t>(v.x) | (static_cast<uint64_t>(v.y) << 32);
  }
}

// ---- block-wide helpers (every thread of the block must call them) -------------------

// Entries of a sorted int32 list a[0..n) that are < x.
__device__ __forceinline__ int CountLess(const int32_t* a, int n, int x) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Count of i in [0, n) with pred(i).
template <class Pred>
__device__ int BlockCount(int n, Pred pred) {
  int total = 0;
  for (int base = 0; base < n; base += blockDim.x) {
    const int i = base + threadIdx.x;
    total += __syncthreads_count(i < n && pred(i));
  }
  return total;
}

struct EmitScratch {
  int warp_sum[32];
};

// Writes out[k] = value(i) for the i in [0, n) with pred(i), in increasing i;
// returns the count. value(i) is read before any write of the same chunk, so
// out may alias the list value() reads, provided writes never pass reads
// (compaction: out index <= i).
template <class Pred, class Value>
__device__ int BlockEmit(int n, Pred pred, Value value, int32_t* out, EmitScratch* sm) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  int running = 0;
  for (int base = 0; base < n; base += blockDim.x) {
    const int i = base + threadIdx.x;
    const bool p = i < n && pred(i);
    const int32_t v = p ? value(i) : 0;
    const unsigned ballot = __ballot_sync(0xffffffffu, p);
    if (lane == 0) sm->warp_sum[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < warps; ++w) {
      const int c = sm->warp_sum[w];
      before += w < warp ? c : 0;
      total += c;
    }
    if (p) out[running + before + __popc(ballot & ((1u << lane) - 1u))] = v;
    running += total;
    __syncthreads();  // warp_sum is rewritten by the next chunk
  }
  return running;
}

struct SelectScratch {
  unsigned hist[256];
  unsigned long long prefix;
  int k;
};

// The k-th smallest (1-based, 1 <= k <= count) of key(i) over i in [0, n)
// with pred(i): MSB-first radix selection, 8 bits per pass over KeyBits bits.
// Keys of distinct elements must differ (then exactly k keys are <= it).
template <int KeyBits, class Pred, class Key>
__device__ uint64_t BlockKthSmallest(int n, int k, Pred pred, Key key, SelectScratch* sm) {
  uint64_t prefix = 0, mask = 0;
  for (int shift = KeyBits - 8; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) sm->hist[b] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      if (!pred(i)) continue;
      const uint64_t kk = key(i);
      if ((kk & mask) == prefix) atomicAdd(&sm->hist[(kk >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int rem = k, b = 0;
      for (; b < 255; ++b) {
        if (rem <= static_cast<int>(sm->hist[b])) break;
        rem -= sm->hist[b];
      }
      sm->k = rem;
      sm->prefix = prefix | (static_cast<uint64_t>(b) << shift);
    }
    __syncthreads();
    prefix = sm->prefix;
    k = sm->k;
    mask |= 255ull << shift;
    __syncthreads();  // sm is rewritten by the next pass
  }
  return prefix;
}

// Stable in-place removal of rows: row r of n_rows (width units of U at
// base + r*stride) moves to r - (removed rows before r); removed rows are
// those listed in the sorted lists a[0..na) and b[0..nb). Rows move only
// left, chunk by chunk (all reads of a chunk precede its writes; a chunk's
// destinations lie below the next chunk's sources), so it is race-free
// within one block. Needs width <= blockDim.x. Ends with a barrier.
template <class U>
__device__ void CompactRows(U* base, int64_t stride, int width, int n_rows, const int32_t* a, int na,
                            const int32_t* b, int nb) {
  if (na + nb == 0 || width <= 0) return;
  const int first = min(na > 0 ? a[0] : n_rows, nb > 0 ? b[0] : n_rows);
  const int rows_per_pass = blockDim.x / width;
  const int r_local = threadIdx.x / width, e = threadIdx.x % width;
  for (int r0 = first; r0 < n_rows; r0 += rows_per_pass) {
    const int r = r0 + r_local;
    int dst = -1;
    U v{};
    if (r_local < rows_per_pass && r < n_rows) {
      const int before = CountLess(a, na, r) + CountLess(b, nb, r);
      const int upto = CountLess(a, na, r + 1) + CountLess(b, nb, r + 1);
      if (upto == before && before > 0) {  // kept and shifted
        dst = r - before;
        v = base[r * stride + e];
      }
    }
    __syncthreads();
    if (dst >= 0) base[dst * stride + e] = v;
  }
  __syncthreads();
}

}  // namespace kvstream::akv_detail
