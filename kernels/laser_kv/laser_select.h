// Selection kernels of LASER-KV (laser_kv.md §4.3 steps 4-5, §6.9, §7):
// K6 laser_tiebreak_dist (frequency_rank), K7a laser_make_keys and
// K7 laser_select_topk. Legend: laser_common.h.
//
// K6 (ṽ = v - mu, ũ = u - mu; mu = nullptr: no centring):
//   l2                    ||ṽ_j - mean_t ũ_t||
//   max_sim               min_t ||ṽ_j - ũ_t||
//   mahalanobis           sqrt(sum_c (ṽ_jc - ū_c)^2 / (var_t ũ_tc + 1e-8)), unbiased
//                         variance; q = 1 falls back to l2 (README "LASER-KV")
//   partitioned_centroid  k = min(max(1, floor(q/16)), 8) contiguous chunks of
//                         ceil(q/k) query rows (empty chunks skipped), min distance
//                         to the chunk centroids
//   none                  0 (count only; the stable order keeps list order)
//   Query statistics (ū, var, centroids) are fp32 sums over t ascending; the
//   per-candidate sums run over c ascending with fmaf, in kernel and twin alike.
// Composite keys (§6.9). K7 keeps the k LARGEST keys; equal keys keep the lower
// index first (stable), which is how frequency_rank's list order survives:
//   exact       (ordered(score) << 32) | pos      higher score, then higher position
//   magicpig    (best << 32) | pos                higher best match, then higher position
//   frequency   (count << 32) | ~ordered(dist)    more collisions, then nearer, then list order
// K7 output: the chosen indices (into keys) in ascending order. Candidate lists
// are in position order in both modes (§4.3 step 3), so this is position order.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/laser_kv/laser_common.h"

namespace kvstream {

enum class LaserTieBreak : uint8_t {  // §4.3 step 5 (proto LaserKvTieBreak minus UNSPECIFIED)
  kL2 = 0,
  kMaxSim = 1,
  kMahalanobis = 2,
  kPartitionedCentroid = 3,
  kNone = 4,
  kCount = 5,
};

enum class LaserKeyMode : uint8_t { kExact = 0, kMagicpig = 1, kFrequency = 2, kCount = 3 };

inline constexpr int kLaserMaxChunks = 8;       // partitioned_centroid cap
inline constexpr float kLaserMahalanobisEps = 1e-8f;

KV_HD uint64_t LaserExactKey(float score, int32_t pos) {
  return (static_cast<uint64_t>(LaserOrderedBits(score)) << 32) | static_cast<uint32_t>(pos);
}
KV_HD uint64_t LaserMagicpigKey(uint16_t best, int32_t pos) {
  return (static_cast<uint64_t>(best) << 32) | static_cast<uint32_t>(pos);
}
KV_HD uint64_t LaserFrequencyKey(uint8_t count, float dist) {
  return (static_cast<uint64_t>(count) << 32) | static_cast<uint32_t>(~LaserOrderedBits(dist));
}
// partitioned_centroid: number of chunks and rows per chunk for q query rows.
KV_HD int LaserNumChunks(int q) {
  const int k = q / 16;
  return k < 1 ? 1 : (k > kLaserMaxChunks ? kLaserMaxChunks : k);
}
KV_HD int LaserChunkRows(int q) { return (q + LaserNumChunks(q) - 1) / LaserNumChunks(q); }

struct LaserTiebreakParams {
  const float* v = nullptr;         // [Nc, D] fp32 candidate head means
  const float* u = nullptr;         // [q, D] fp32 query head means
  const float* mu = nullptr;        // [D] fp32 centre, or nullptr
  float* dist = nullptr;            // [Nc] fp32
  float* stats = nullptr;           // [(2 + 8), D] fp32 scratch (ū, var, centroids); LaserTiebreakWorkspaceBytes
  int num_cand = 0;                 // Nc (0 = nothing to do)
  int num_query = 0;                // q >= 1
  int head_dim = 0;                 // D: 64 or 128
  LaserTieBreak mode = LaserTieBreak::kL2;
};

struct LaserMakeKeysParams {
  LaserKeyMode mode = LaserKeyMode::kExact;
  const float* score = nullptr;        // exact: [Wn] fp32 window scores (K1)
  const int32_t* score_rows = nullptr; // exact: [N] window index of entry i; nullptr = i
  const uint16_t* best = nullptr;      // magicpig: [N] (K5)
  const int32_t* pos = nullptr;        // exact, magicpig: [N] original positions
  const uint8_t* counts = nullptr;     // frequency: [N] (K4)
  const float* dist = nullptr;         // frequency: [N] (K6), nullptr = all 0 (tie_break none)
  uint64_t* keys = nullptr;            // [N]
  int num = 0;                         // N (0 = nothing to do)
};

struct LaserSelectTopkParams {
  const uint64_t* keys = nullptr;   // [N]
  int32_t* out = nullptr;           // [min(k, N)] chosen indices, ascending
  void* workspace = nullptr;        // LaserSelectTopkWorkspaceBytes(N, k) bytes (CUDA only)
  size_t workspace_bytes = 0;
  int num = 0;                      // N
  int k = 0;                        // >= 0; k >= N keeps all
};

// Bytes of K6's stats scratch ((2 + 8) * D fp32).
size_t LaserTiebreakWorkspaceBytes(int head_dim);

const char* LaserTiebreakValidate(const LaserTiebreakParams& p);
const char* LaserMakeKeysValidate(const LaserMakeKeysParams& p);
const char* LaserSelectTopkValidate(const LaserSelectTopkParams& p);  // workspace not checked

// ---- CPU twins (host pointers; false and nothing written if invalid) ------------
bool LaserTiebreakRef(const LaserTiebreakParams& p);  // stats may be null on the CPU
bool LaserMakeKeysRef(const LaserMakeKeysParams& p);
bool LaserSelectTopkRef(const LaserSelectTopkParams& p);  // stable sort; workspace unused

#if defined(KVSTREAM_LASER_HAS_LAUNCHER)
// One CTA computes the query statistics, then one thread per candidate.
cudaError_t LaunchLaserTiebreak(const LaserTiebreakParams& p, cudaStream_t stream);
// One thread per entry.
cudaError_t LaunchLaserMakeKeys(const LaserMakeKeysParams& p, cudaStream_t stream);
// Scratch for N keys, k picks (CUB's radix-sort storage + key/index buffers);
// queried from CUB on the host, allocates nothing.
size_t LaserSelectTopkWorkspaceBytes(int num, int k);
// Stable descending radix sort of (key, index) pairs, then an ascending sort
// of the first min(k, N) indices.
cudaError_t LaunchLaserSelectTopk(const LaserSelectTopkParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
