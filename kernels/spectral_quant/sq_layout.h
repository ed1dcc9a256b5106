// SpectralQuant kernel family: legend, per-(layer, KV head) plan layout, unit
// Lloyd–Max tables and the packed record format (spectral_quant.md §3, §4.2,
// §4.3, §7). Plain C++: the engine fills these on the host (plan build) and
// copies the flat arrays to the device; the CPU twins read host copies.
//
// Legend (dimension letters used in every shape of this family)
//   T    tokens compressed by one K1/K3 call
//   Tq   query positions of one K2 call;  Tk  compressed keys;  Td  dense keys
//   Hq   query heads;  Hkv  KV heads;  G = Hq / Hkv (query head hq reads KV head hq / G)
//   D    head dim (64 or 128, compile-time in the kernels)
//   W    u32 words of one record (one per layer and type: padded to the widest head)
//   SW   u32 words of one QJL sign record (ceil(max d_eff / 32) of the layer)
//
// Record format (§4.3 step 1, §7 K1): dimension i (eigen order, i < D) of a
// token's K or V record is the w_i-bit code at bits [off_i, off_i + w_i) of the
// record read as one little-endian bit string: bit b lives in word b / 32 at
// bit b % 32 (LSB first). A code may straddle a word boundary. Every bit that
// no dimension covers (padding up to W words) is written 0. Codes: code =
// #{midpoints m of U_{w_i} : m < z_i / s_i} (IEEE division, nearest centroid,
// ties to the lower index); reconstruction z^_i = s_i * U_{w_i}[code].
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/host_device.h"

namespace kvstream {

inline constexpr int kSqMinWidth = 1;
inline constexpr int kSqMaxWidth = 8;
inline constexpr int kSqMaxHeadDim = 128;
// Unit tables, one flat fp32 buffer [kSqTableFloats] (device memory for the
// launchers; K1/K2/K3 copy it to shared memory):
//   [0, 510)      centroids: U_w (2^w ascending values) at SqCentroidOffset(w), w = 1..8
//   [510, 1012)   midpoints: M_w (2^w - 1 ascending values) at kSqCentroidFloats + SqMidpointOffset(w)
inline constexpr int kSqCentroidFloats = 510;  // sum_{w=1..8} 2^w
inline constexpr int kSqMidpointFloats = 502;  // sum_{w=1..8} (2^w - 1)
inline constexpr int kSqTableFloats = kSqCentroidFloats + kSqMidpointFloats;
// The largest record: D = 128 dimensions of 8 bits.
inline constexpr int kSqMaxRecordWords = kSqMaxHeadDim * kSqMaxWidth / 32;

KV_HD int SqCentroidOffset(int w) { return (1 << w) - 2; }
KV_HD int SqMidpointOffset(int w) { return (1 << w) - w - 1; }

// The plan of ONE layer and ONE type (K or V), for all its KV heads. Pointers
// are device memory for the launchers, host memory for the CPU twins.
struct SqPlanView {
  const uint8_t* width = nullptr;       // [Hkv, D] w_i in 1..8, eigen order (§4.2 steps 2, 4)
  const float* scale = nullptr;         // [Hkv, D] s_i > 0 (finite): semantic sigma or tail sigma (§4.2 step 3)
  const uint16_t* bit_offset = nullptr; // [Hkv, D] off_i: first bit of dimension i in the record.
                                        //   MUST be the back-to-back packing of SqPackBitOffsets
                                        //   (off_0 = 0, off_{i+1} = off_i + w_i) with
                                        //   off_{D-1} + w_{D-1} <= 32 * words. K1/K3 and the twins
                                        //   only need non-overlapping fields; K2's value path relies
                                        //   on D/32 consecutive fields spanning <= 2 words.
  const int32_t* d_eff = nullptr;       // [Hkv] d_eff (K) / v_d_eff (V), in [2, D-2]; K2 and K1 read
                                        //   it only with QJL on (number of sign bits / rows of S');
                                        //   may be null otherwise
  int words = 0;                        // W: u32 words per record, the same for every head of the layer
};

// Host helper for the plan build: off_i = sum_{j<i} w_j over one head's D
// widths (back to back, the §3 formula's bits); returns the head's total bits.
inline int SqPackBitOffsets(const uint8_t* width, int head_dim, uint16_t* bit_offset) {
  int bits = 0;
  for (int i = 0; i < head_dim; ++i) {
    bit_offset[i] = static_cast<uint16_t>(bits);
    bits += width[i];
  }
  return bits;
}

// Words of a record holding `bits` bits (padded to whole words, §3).
inline constexpr int SqRecordWords(int bits) { return (bits + 31) / 32; }
// QJL sign words for d_eff sign bits (§7 K1: u32 [T, Hkv, ceil(d_eff/32)]).
inline constexpr int SqSignWords(int d_eff) { return (d_eff + 31) / 32; }

// The head dims the kernels are built for.
inline constexpr bool SqSupportsHeadDim(int head_dim) { return head_dim == 64 || head_dim == 128; }

// Extracts the w-bit field at bit `off` of a record (host and device).
KV_HD uint32_t SqReadField(const uint32_t* rec, int off, int w) {
  const int k = off >> 5, sh = off & 31;
  uint64_t v = rec[k];
  if (sh + w > 32) v |= static_cast<uint64_t>(rec[k + 1]) << 32;
  return static_cast<uint32_t>(v >> sh) & ((1u << w) - 1u);
}

}  // namespace kvstream
