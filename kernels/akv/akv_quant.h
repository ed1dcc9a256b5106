// AKV warm-tier quantizer (akv.md §6 "Quantizer math", strategies/README.md
// "Quantizer rule"): asymmetric min/max per (token, head, group of g channels).
//
//   lo = min x, hi = max x                       (fp32; -0 folded to +0)
//   zero  = fp16(lo), scale = fp16((hi - lo) / (2^b - 1))   round-to-nearest-even;
//           a result that would be +-inf saturates to +-65504 and is counted
//   code  = scale == 0 ? 0 : clamp(rint((x - zero) / scale), 0, 2^b - 1)
//           (codes from the ROUNDED zero/scale; IEEE division; rint = half to even)
//   x^    = code * scale + zero                  (fp32; the product is exact)
// akv.md's max(scale, 1e-10) floor is subsumed: fp16(1e-10) == 0 -> code 0.
//
// Shapes (legend in akv_layout.h): x [n, Hkv, D] dtype with row stride
// x_row_stride elements (0 = Hkv*D); codes [n, Hkv, Cb]; scale/zero [n, Hkv, Gn].
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/akv/akv_layout.h"
#include "kernels/common/half_bits.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_AKV_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct AkvQuantizeParams {
  const void* x = nullptr;         // [n, Hkv, D] dtype, row r at r * x_row_stride
  uint8_t* codes = nullptr;        // [n, Hkv, Cb]
  uint16_t* scale = nullptr;       // [n, Hkv, Gn] fp16 bits
  uint16_t* zero = nullptr;        // [n, Hkv, Gn] fp16 bits
  int32_t* saturations = nullptr;  // optional [1]: += groups whose scale or zero saturated
  int64_t x_row_stride = 0;        // elements; 0 = Hkv*D
  int rows = 0;                    // n
  int num_kv_heads = 0;            // Hkv
  int head_dim = 0;                // D (64 or 128)
  int bits = 4;                    // b: 2, 4, 8
  int group_size = 128;            // g, divides D, >= 32
  KvDType dtype = KvDType::kBf16;
};

struct AkvDequantParams {
  const uint8_t* codes = nullptr;  // [n, Hkv, Cb]
  const uint16_t* scale = nullptr; // [n, Hkv, Gn]
  const uint16_t* zero = nullptr;  // [n, Hkv, Gn]
  void* x = nullptr;               // [n, Hkv, D] dtype (packed), x^ rounded to dtype
  int rows = 0, num_kv_heads = 0, head_dim = 0, bits = 4, group_size = 128;
  KvDType dtype = KvDType::kBf16;
};

// True for the shapes the kernels and twins handle: D in {64, 128}, b in
// {2, 4, 8}, g in {32, 64, 128} with g <= D. dtype: fp32/fp16/bf16 for the
// twins; the CUDA kernels are built for bf16 and fp32 (AkvCudaSupports).
bool AkvQuantSupports(int head_dim, int bits, int group_size);

// nullptr if valid, else a static message naming the bad field.
const char* AkvQuantizeValidate(const AkvQuantizeParams& p);
const char* AkvDequantValidate(const AkvDequantParams& p);

// ---- host quantizer math (shared by every CPU twin) -------------------------------
// fp16 bits of v rounded to nearest even, saturated to +-65504 (sets *sat).
inline uint16_t AkvHalfSat(float v, bool* sat) {
  uint16_t h = FloatToHalfBits(v);
  if ((h & 0x7fffu) == 0x7c00u) {  // rounded to +-inf
    *sat = true;
    h = static_cast<uint16_t>((h & 0x8000u) | 0x7bffu);
  }
  return h;
}

// Quantizes g values x into codes[0..g) (one code per byte, unpacked) and the
// group's fp16 scale/zero; returns true if scale or zero saturated.
inline bool AkvQuantizeGroupHost(const float* x, int g, int bits, uint8_t* codes, uint16_t* scale_bits,
                                 uint16_t* zero_bits) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < g; ++i) {
    lo = std::fmin(lo, x[i]);
    hi = std::fmax(hi, x[i]);
  }
  lo += 0.0f;
  hi += 0.0f;
  const float levels = static_cast<float>((1 << bits) - 1);
  bool sat = false;
  *zero_bits = AkvHalfSat(lo, &sat);
  *scale_bits = AkvHalfSat((hi - lo) / levels, &sat);
  const float mn = HalfBitsToFloat(*zero_bits), sc = HalfBitsToFloat(*scale_bits);
  for (int i = 0; i < g; ++i) {
    if (!(sc > 0.0f)) {
      codes[i] = 0;
      continue;
    }
    float r = std::nearbyint((x[i] - mn) / sc);  // default rounding mode: half to even
    r = r < 0.0f ? 0.0f : (r > levels ? levels : r);
    codes[i] = static_cast<uint8_t>(r);
  }
  return sat;
}

// Packs g codes of `bits` bits into g*bits/8 bytes (element e at bit e*bits
// of the little-endian byte stream).
inline void AkvPackHost(const uint8_t* codes, int g, int bits, uint8_t* out) {
  const int bytes = g * bits / 8;
  for (int i = 0; i < bytes; ++i) out[i] = 0;
  for (int e = 0; e < g; ++e) {
    const int bit = e * bits;
    out[bit / 8] = static_cast<uint8_t>(out[bit / 8] | (codes[e] << (bit % 8)));
  }
}

inline int AkvCodeAt(const uint8_t* row, int e, int bits) {
  const int bit = e * bits;
  return (row[bit / 8] >> (bit % 8)) & ((1 << bits) - 1);
}

// Dequantizes g codes of B bits (g*B/8 bytes) with one scale/zero.
template <int B>
inline void AkvDequantGroupHost(const uint8_t* codes, float sc, float mn, int g, float* out) {
  constexpr int kPer = 8 / B;
  constexpr unsigned kMask = (1u << B) - 1u;
  for (int i = 0; i < g / kPer; ++i) {
    const unsigned byte = codes[i];
    for (int k = 0; k < kPer; ++k) out[i * kPer + k] = static_cast<float>((byte >> (k * B)) & kMask) * sc + mn;
  }
}

// Dequantizes one (row, head) slice of D values into out (fp32).
inline void AkvDequantRowHost(const uint8_t* codes, const uint16_t* scale, const uint16_t* zero, int head_dim,
                              int bits, int group_size, float* out) {
  for (int grp = 0; grp < head_dim / group_size; ++grp) {
    const float sc = HalfBitsToFloat(scale[grp]), mn = HalfBitsToFloat(zero[grp]);
    const uint8_t* c = codes + grp * group_size * bits / 8;
    float* o = out + grp * group_size;
    switch (bits) {
      case 2: AkvDequantGroupHost<2>(c, sc, mn, group_size, o); break;
      case 4: AkvDequantGroupHost<4>(c, sc, mn, group_size, o); break;
      default: AkvDequantGroupHost<8>(c, sc, mn, group_size, o); break;
    }
  }
}

// Quantizes one (row, head) slice of D fp32 values; returns saturated groups.
int AkvQuantizeRowHost(const float* x, int head_dim, int bits, int group_size, uint8_t* codes, uint16_t* scale,
                       uint16_t* zero);

// ---- CPU twins (host pointers; false and nothing written if invalid) ----------------
bool AkvQuantizeRef(const AkvQuantizeParams& p);
bool AkvDequantRef(const AkvDequantParams& p);

// ---- CUDA launchers ------------------------------------------------------------------
#if defined(KVSTREAM_AKV_HAS_LAUNCHER)
// One thread per (row, head, group). Bit-exact with AkvQuantizeRef/AkvDequantRef.
cudaError_t LaunchAkvQuantizePack(const AkvQuantizeParams& p, cudaStream_t stream);
cudaError_t LaunchAkvDequant(const AkvDequantParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
