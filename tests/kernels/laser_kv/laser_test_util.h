// Host-side helpers of the LASER-KV kernel tests (CPU twins and CUDA tests):
// random values in any KV dtype, and key/value segments that own their bytes.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/laser_kv/laser_kv.h"

namespace kvstream::testing {

// n values ~ N(0, sigma) stored as `dtype` (bytes).
inline std::vector<uint8_t> LaserRandomBytes(size_t n, KvDType dtype, std::mt19937* rng, float sigma = 1.0f) {
  std::vector<uint8_t> out(n * KvDTypeSize(dtype));
  std::normal_distribution<float> nd(0.0f, sigma);
  for (size_t i = 0; i < n; ++i) StoreFromFloat(out.data(), i, nd(*rng), dtype);
  return out;
}

inline std::vector<float> LaserRandomFloats(size_t n, std::mt19937* rng, float sigma = 1.0f) {
  std::vector<float> out(n);
  std::normal_distribution<float> nd(0.0f, sigma);
  for (float& x : out) x = nd(*rng);
  return out;
}

// A segment of `len` rows with K, V and positions. token_major lays each layer
// out as [len, Hkv, D] (strides set) instead of the default [Hkv, len, D];
// pad_rows adds unused rows of capacity (stride_h = (len + pad)*D).
struct LaserTestSegment {
  std::vector<uint8_t> k, v;
  std::vector<int32_t> pos;
  LaserSegment seg;
  int layers = 1, hkv = 1, d = 64, len = 0;
  KvDType dtype = KvDType::kFp32;

  LaserTestSegment(int layers_, int hkv_, int len_, int d_, KvDType dt, std::mt19937* rng, int first_pos,
                   bool token_major = false, int pad_rows = 0)
      : layers(layers_), hkv(hkv_), d(d_), len(len_), dtype(dt) {
    const int cap = len + pad_rows;
    const size_t n = size_t(layers) * hkv * cap * d;
    k = LaserRandomBytes(n, dt, rng);
    v = LaserRandomBytes(n, dt, rng);
    for (int j = 0; j < len; ++j) pos.push_back(first_pos + 2 * j);  // gaps, as after compaction
    seg.k = k.data();
    seg.v = v.data();
    seg.pos = pos.data();
    seg.len = len;
    seg.stride_l = int64_t(hkv) * cap * d;
    if (token_major) {
      seg.stride_h = d;
      seg.stride_j = int64_t(hkv) * d;
    } else {
      seg.stride_h = int64_t(cap) * d;
      seg.stride_j = d;
    }
  }
  // Element (l, g, j, c) of K or V as float.
  float K(int l, int g, int j, int c) const { return LoadAsFloat(k.data(), Off(l, g, j, c), dtype); }
  float V(int l, int g, int j, int c) const { return LoadAsFloat(v.data(), Off(l, g, j, c), dtype); }
  size_t Off(int l, int g, int j, int c) const {
    return size_t(l * seg.stride_l + g * seg.stride_h + j * seg.stride_j + c);
  }
  void SetK(int l, int g, int j, int c, float x) { StoreFromFloat(k.data(), Off(l, g, j, c), x, dtype); }
};

}  // namespace kvstream::testing
