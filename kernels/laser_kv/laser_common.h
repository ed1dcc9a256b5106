// LASER-KV kernel family: legend, the key-segment descriptor and the small
// host/device helpers shared by the kernels (laser_kv.md §4.3, §6.7-§6.9, §7).
//
// Legend (every shape below uses these letters)
//   Ly   layers                          H    query heads
//   Hkv  KV heads (GQA: head h reads KV head g(h) = floor(h*Hkv/H), §4.3 step 4)
//   D    head dim (64 or 128)            q    query (probe) tokens
//   S    number of key segments (<= 3)   Wn   window keys = sum of the segment lengths
//   N    rows given to a kernel          Nc   LSH candidates    Ns   magicpig survivors
//   L    LSH tables                      K    bits per table   LK = L*K (<= 1024)
//   w    64-bit words per packed code = ceil(LK/64)             M    kept rows
//
// Row references: kernels that read rows of several segments (K2, K8) take an
// int32 "concatenated index": row r of the list seg[0] ++ seg[1] ++ seg[2]
// (r < len0 is seg 0 row r, r - len0 < len1 is seg 1, ...). The window of K1
// uses the same numbering, so a candidate's score is scores[r].
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/host_device.h"
#include "kernels/common/kv_dtype.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_LASER_HAS_LAUNCHER 1
#endif

namespace kvstream {

inline constexpr int kLaserMaxSegments = 3;     // C, T, block (K8); K1 uses <= 2
inline constexpr int kLaserMaxTables = 128;     // L range (§5)
inline constexpr int kLaserMaxBits = 16;        // K range (§5)
inline constexpr int kLaserMaxCodeBits = 1024;  // L*K cap (§5)
inline constexpr int kLaserMaxCodeWords = kLaserMaxCodeBits / 64;

// One segment of cached keys/values (C, T or the current block), any layer
// count. Element (l, g, j, c) of k (and of v) is at
//   l*stride_l + g*stride_h + j*stride_j + c      (elements of `dtype`)
// Zero strides mean contiguous [Ly, Hkv, len, D]: stride_j = D,
// stride_h = len*D, stride_l = Hkv*len*D.
struct LaserSegment {
  const void* k = nullptr;        // [Ly, Hkv, len, D] dtype (strided)
  const void* v = nullptr;        // [Ly, Hkv, len, D] dtype (strided); K8 only
  const int32_t* pos = nullptr;   // [len] original positions; K8 only
  int len = 0;                    // rows; 0 = unused segment (pointers may be null)
  int64_t stride_l = 0, stride_h = 0, stride_j = 0;  // elements; 0 = contiguous
};

// Effective strides of a segment (zero fields replaced by the contiguous ones).
struct LaserSegStrides {
  int64_t l = 0, h = 0, j = 0;
};
KV_HD LaserSegStrides LaserStridesOf(const LaserSegment& s, int num_kv_heads, int head_dim) {
  LaserSegStrides r;
  r.j = s.stride_j ? s.stride_j : head_dim;
  r.h = s.stride_h ? s.stride_h : static_cast<int64_t>(s.len) * head_dim;
  r.l = s.stride_l ? s.stride_l : static_cast<int64_t>(num_kv_heads) * s.len * head_dim;
  return r;
}

// GQA mapping of §4.3 step 4 (also correct when H is not a multiple of Hkv).
KV_HD int LaserKvHeadOf(int h, int num_heads, int num_kv_heads) {
  return static_cast<int>((static_cast<int64_t>(h) * num_kv_heads) / num_heads);
}

// splitmix64 output for state `x` (the state advances by the golden gamma
// before mixing, as in the standard generator; §6.7). All arithmetic mod 2^64.
KV_HD uint64_t LaserSplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Order-preserving map of an fp32 to uint32 (a < b  <=>  map(a) < map(b);
// -0 maps just below +0; NaN is not expected). Used by the composite keys.
KV_HD uint32_t LaserOrderedBits(float f) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(f);
#else
  std::memcpy(&u, &f, 4);
#endif
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Host-side checks shared by the validators: D is built, the dtype is one of
// the three, and every used segment (len > 0) has its keys (and, when
// need_values, its values and positions).
inline bool LaserHeadDimOk(int d) { return d == 64 || d == 128; }
inline bool LaserDTypeOk(KvDType t) {
  return t == KvDType::kFp32 || t == KvDType::kFp16 || t == KvDType::kBf16;
}
inline bool LaserSegmentsOk(const LaserSegment* s, int n, bool need_values, int64_t* total) {
  int64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    if (s[i].len < 0) return false;
    if (s[i].len > 0 && (!s[i].k || (need_values && (!s[i].v || !s[i].pos)))) return false;
    sum += s[i].len;
  }
  *total = sum;
  return sum < (int64_t{1} << 31);
}

}  // namespace kvstream
