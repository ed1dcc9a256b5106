// LSH kernels of LASER-KV (laser_kv.md §4.3 step 5, §6.7, §6.8, §7):
// K3a laser_column_mean, K3 laser_lsh_hash, K4 laser_collision_count,
// K5 laser_best_match, plus the projection generator R and magicpig's U(p).
// Legend: laser_common.h.
//
// R (§6.7): fp32 [D, LK] row-major, element (c, col) at c*LK + col. Element i
//   (row-major) is normal z_i; pairs (z_2p, z_2p+1) come from Box-Muller on
//   a = splitmix64(seed + (2p)*gamma), b = splitmix64(seed + (2p+1)*gamma)
//   (i.e. the 2p-th and (2p+1)-th outputs of a splitmix64 stream seeded with
//   lsh_seed): u1 = ((a >> 11) + 1) * 2^-53 in (0, 1], u2 = (b >> 11) * 2^-53,
//   r = sqrt(-2 ln u1), z_2p = r cos(2 pi u2), z_2p+1 = r sin(2 pi u2), in
//   double, rounded to fp32. Made once on the host and uploaded (§6.7).
// K3a: mu[c] = (sum_{i ascending} v[i, c]) / N in fp32.
// K3:  proj[i, col] = fmaf over c ascending of (v[i,c] - mu[c]) * R[c, col]
//      (mu = nullptr: v[i,c]); bit(i, col) = proj > 0 (strict); col = t*K + k.
//      codes[i, t] = sum_k bit(i, t*K+k) << k;
//      bits[i, col/64] has bit (col % 64) = bit(i, col); unused high bits 0.
// K4:  counts[j] = #{t : code_c[j, t] == code_q[u, t] for some u}   (§4.3 step 5)
// K5:  best[j] = max_u (LK - popcount(bits_q[u] xor bits_s[rows[j]]))  (§6.8)
// U:   x = p^K, U = 1 - (1-x)^L - L x (1-x)^(L-1); reported only (§6.8).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/laser_kv/laser_common.h"

namespace kvstream {

struct LaserColumnMeanParams {
  const float* v = nullptr;         // [N, D] fp32 (head means, K2's out)
  float* mu = nullptr;              // [D] fp32
  int num_rows = 0;                 // N >= 1
  int head_dim = 0;                 // D: 64 or 128
};

struct LaserLshHashParams {
  const float* v = nullptr;         // [N, D] fp32
  const float* mu = nullptr;        // [D] fp32 centre, or nullptr (no centring)
  const float* r = nullptr;         // [D, LK] fp32 (LaserMakeProjection)
  int32_t* codes = nullptr;         // [N, L] int32 in [0, 2^K)
  uint64_t* bits = nullptr;         // [N, w] packed sign bits, or nullptr (not wanted)
  int num_rows = 0;                 // N (0 = nothing to do)
  int head_dim = 0;                 // D: 64 or 128
  int num_tables = 0;               // L in [1, 128]
  int num_bits = 0;                 // K in [1, 16]; L*K <= 1024
};

struct LaserCollisionCountParams {
  const int32_t* query_codes = nullptr;  // [q, L] int32
  const int32_t* cand_codes = nullptr;   // [Nc, L] int32
  uint8_t* counts = nullptr;             // [Nc] in [0, L]
  uint32_t* bitmap = nullptr;            // [L, 2^K / 32 (at least 1)] scratch; LaserCollisionWorkspaceBytes
  int num_query = 0;                     // q >= 1
  int num_cand = 0;                      // Nc (0 = nothing to do)
  int num_tables = 0;                    // L
  int num_bits = 0;                      // K
};

struct LaserBestMatchParams {
  const uint64_t* query_bits = nullptr;  // [q, w]
  const uint64_t* cand_bits = nullptr;   // [Nc, w] (all candidates)
  const int32_t* rows = nullptr;         // [Ns] survivor rows of cand_bits; nullptr = 0..Ns-1
  uint16_t* best = nullptr;              // [Ns] in [0, LK]
  int num_query = 0;                     // q >= 1
  int num_rows = 0;                      // Ns (0 = nothing to do)
  int num_tables = 0;                    // L
  int num_bits = 0;                      // K
};

// ceil(L*K/64).
inline int LaserCodeWords(int num_tables, int num_bits) { return (num_tables * num_bits + 63) / 64; }
// Bytes of K4's bitmap.
size_t LaserCollisionWorkspaceBytes(int num_tables, int num_bits);

// R of §6.7 (layout above) into r[D * L*K]; false if D, L, K are out of range.
bool LaserMakeProjection(uint64_t seed, int head_dim, int num_tables, int num_bits, float* r);
// magicpig's U(p) for K bits and L tables (double; U(0) = 0, U(1) = 1).
double LaserMagicpigU(double p, int num_bits, int num_tables);

const char* LaserColumnMeanValidate(const LaserColumnMeanParams& p);
const char* LaserLshHashValidate(const LaserLshHashParams& p);
const char* LaserCollisionCountValidate(const LaserCollisionCountParams& p);
const char* LaserBestMatchValidate(const LaserBestMatchParams& p);

// ---- CPU twins (host pointers; false and nothing written if invalid) ------------
// All four are bit-exact with their kernels (same fp32 operation order; K3
// can differ only where |proj| is within rounding of 0).
bool LaserColumnMeanRef(const LaserColumnMeanParams& p);
bool LaserLshHashRef(const LaserLshHashParams& p);
bool LaserCollisionCountRef(const LaserCollisionCountParams& p);  // bitmap unused (may be null)
bool LaserBestMatchRef(const LaserBestMatchParams& p);

#if defined(KVSTREAM_LASER_HAS_LAUNCHER)
// One thread per column, rows summed in order.
cudaError_t LaunchLaserColumnMean(const LaserColumnMeanParams& p, cudaStream_t stream);
// One CTA per row: the LK projections into shared memory, then codes and words.
cudaError_t LaunchLaserLshHash(const LaserLshHashParams& p, cudaStream_t stream);
// cudaMemsetAsync of the bitmap, one thread per (u, t) sets bits, one thread
// per candidate counts.
cudaError_t LaunchLaserCollisionCount(const LaserCollisionCountParams& p, cudaStream_t stream);
// One thread per survivor.
cudaError_t LaunchLaserBestMatch(const LaserBestMatchParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
