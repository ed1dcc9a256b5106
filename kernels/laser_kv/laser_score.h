// K1 laser_window_scores, K1b laser_pool_scores and K2 laser_head_mean (laser_kv.md §4.3 steps 4-5, §7).
// Legend and LaserSegment: laser_common.h.
//
// K1 (per layer, added over layers):
//   z[h,t,j]    = scale * <Q[t,h,:], Kwin[g(h), j, :]>,  j over the window
//   m, Zs[h,t]  = max_j z, sum_j exp(z - m)                 (pass 1, online)
//   scores[j]  += sum_{h,t} exp(z[h,t,j] - m[h,t]) / Zs[h,t] (pass 2)
//   The window is seg[0] ++ seg[1] (T or C, then the block; §4.3 step 4),
//   numbered as in laser_common.h; one layer's slice of each segment (l = 0).
//   Invariant after Ly layers starting from 0: sum_j scores[j] = Ly*H*q.
// K1b (kvstream choice, laser_kv_strategy.h "Score pooling"): the exact
//   selector ranks a window entry by the mean of the K1 scores of the entries
//   at most r positions away from it (itself included):
//   out[j] = (sum_{i in N(j)} scores[i]) / |N(j)|,
//   N(j) = { i : |i - j| <= r, 0 <= i < Wn, |pos[i] - pos[j]| <= r }
//   (pos ascending, so every such entry lies within r window slots). The sum
//   runs over i ascending in fp32, then one fp32 division: kernel and twin
//   are bit-equal. r = 0 copies the scores.
// K2:
//   out[i, c] = (1/Hkv) * sum_{g ascending} K[g, rows[i], c]   (fp32; §4.3 step 5:
//   the last layer's keys of candidates, or of the query tokens for u_t)
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/laser_kv/laser_common.h"

namespace kvstream {

struct LaserWindowScoresParams {
  const void* q = nullptr;          // [q, H, D] dtype, element (t, h, c) at t*q_stride_t + h*q_stride_h + c
  int64_t q_stride_t = 0, q_stride_h = 0;  // elements; 0 = H*D and D
  LaserSegment seg[2];              // window keys, k only, layer 0 of each ([Hkv, len, D] slices)
  float* scores = nullptr;          // [Wn] fp32, accumulated (+=); the caller zeroes it before layer 0
  float* row_stats = nullptr;       // fp32 scratch of LaserWindowScoresWorkspaceBytes: [2, H, q] (m, then Zs),
                                    // then (CUDA) [16, 2, H, q] per-split partials
  int num_heads = 0;                // H
  int num_kv_heads = 0;             // Hkv
  int head_dim = 0;                 // D: 64 or 128
  int num_query = 0;                // q >= 1
  float scale = 0.0f;               // 1/sqrt(D), computed by the host
  KvDType dtype = KvDType::kBf16;   // of q and the keys
};

struct LaserHeadMeanParams {
  LaserSegment seg[kLaserMaxSegments];  // k only, layer 0 of each (pass the last layer's slice)
  const int32_t* rows = nullptr;    // [N] concatenated indices (laser_common.h); nullptr = 0..N-1
  float* out = nullptr;             // [N, D] fp32
  int num_rows = 0;                 // N (0 = nothing to do)
  int num_kv_heads = 0;             // Hkv
  int head_dim = 0;                 // D: 64 or 128
  KvDType dtype = KvDType::kBf16;   // of the keys
};

struct LaserPoolScoresParams {
  const float* scores = nullptr;    // [Wn] fp32 K1 sums
  const int32_t* pos = nullptr;     // [Wn] original positions of the window entries, strictly ascending
  float* out = nullptr;             // [Wn] fp32 (must not alias scores)
  int num = 0;                      // Wn (0 = nothing to do)
  int radius = 0;                   // r, 0..kLaserMaxPoolRadius
};

inline constexpr int kLaserScoreMaxSplits = 16;  // pass-1 window splits (CUDA)
inline constexpr int kLaserMaxPoolRadius = 64;   // K1b r range

// K1b for entry j: the one formula of kernel and twin.
KV_HD float LaserPooledScore(const float* scores, const int32_t* pos, int num, int radius, int j) {
  const int lo = j - radius < 0 ? 0 : j - radius;
  const int hi = j + radius >= num ? num - 1 : j + radius;
  float sum = 0.0f;
  int count = 0;
  for (int i = lo; i <= hi; ++i) {
    const int64_t d = static_cast<int64_t>(pos[i]) - pos[j];
    if (d <= radius && d >= -radius) {
      sum += scores[i];
      ++count;
    }
  }
  return sum / static_cast<float>(count);
}

// Bytes of row_stats: (2 + 2*16)*H*q fp32 (the twin writes the first 2*H*q).
size_t LaserWindowScoresWorkspaceBytes(int num_heads, int num_query);

// nullptr if valid, else a static message naming the bad field.
const char* LaserWindowScoresValidate(const LaserWindowScoresParams& p);
const char* LaserHeadMeanValidate(const LaserHeadMeanParams& p);
const char* LaserPoolScoresValidate(const LaserPoolScoresParams& p);

// ---- CPU twins (host pointers; false and nothing written if invalid) ------------
// Dot products in fp32 (8 partial sums, vectorised); logits, max, sums and
// probabilities in double; each key's sum over (h, t)
// is added to scores[j] once, in fp32. row_stats (fp32 m, Zs) is written when
// non-null (CPU callers may pass null).
bool LaserWindowScoresRef(const LaserWindowScoresParams& p);
// fp32 sum over g ascending, then divided by Hkv (the kernel's order: bit-equal).
bool LaserHeadMeanRef(const LaserHeadMeanParams& p);
// The K1b formula, in the kernel's order (bit-equal).
bool LaserPoolScoresRef(const LaserPoolScoresParams& p);

#if defined(KVSTREAM_LASER_HAS_LAUNCHER)
// Pass 1: one CTA per (32 query rows, h, window split), key tiles in shared
// memory, online max/sum per row, then a merge of the splits. Pass 2: one CTA
// per 32-key tile over all (h, t), no atomics (deterministic).
cudaError_t LaunchLaserWindowScores(const LaserWindowScoresParams& p, cudaStream_t stream);
// One thread per (i, c).
cudaError_t LaunchLaserHeadMean(const LaserHeadMeanParams& p, cudaStream_t stream);
// One thread per window entry.
cudaError_t LaunchLaserPoolScores(const LaserPoolScoresParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
