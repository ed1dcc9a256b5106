// The elementwise arithmetic of the block's SwiGLU and RoPE with the rounding
// points of kernels/model/fused_ops.h, in one place for their own kernels
// (fused_ops.cu) and for the GEMV epilogues that apply them to a projection's
// output (gemv.cu): both must give the same bits.
#pragma once

#include <cstdint>

#include "kernels/common/device_math.cuh"

namespace kvstream {

// dtype(silu(g)) * u, before the caller's store rounds it; g and u are values
// of the storage dtype.
template <class T>
__device__ __forceinline__ float SiluMulValue(float g, float u) {
  return RoundTo<T>(g / (1.f + expf(-g))) * u;
}

// One rotate-half pair (x1 = x[i], x2 = x[i + D/2]) at `pos` with frequency
// inv_freq[i]; y1, y2 before the caller's store rounds them.
template <class T>
__device__ __forceinline__ void RopePair(float x1, float x2, int64_t pos, float inv_freq, float& y1, float& y2) {
  float s, c;
  sincosf(static_cast<float>(pos) * inv_freq, &s, &c);
  c = RoundTo<T>(c);
  s = RoundTo<T>(s);
  y1 = RoundTo<T>(x1 * c) - RoundTo<T>(x2 * s);
  y2 = RoundTo<T>(x2 * c) + RoundTo<T>(x1 * s);
}

}  // namespace kvstream
