// CPU twins of K6 laser_tiebreak_dist, K7a laser_make_keys and K7
// laser_select_topk (formulas and tie rules in laser_select.h; laser_kv.md
// §4.3 step 5, §6.9). K6 uses the kernel's fp32 operation order.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/laser_kv/laser_select.h"

namespace kvstream {

size_t LaserTiebreakWorkspaceBytes(int head_dim) {
  return static_cast<size_t>(2 + kLaserMaxChunks) * static_cast<size_t>(head_dim) * sizeof(float);
}

const char* LaserTiebreakValidate(const LaserTiebreakParams& p) {
  if (p.num_cand < 0) return "num_cand must be >= 0";
  if (p.num_query < 1 || !p.u) return "num_query must be >= 1 with u non-null";
  if (p.num_cand > 0 && (!p.v || !p.dist)) return "v and dist must be non-null";
  if (!LaserHeadDimOk(p.head_dim)) return "head_dim must be 64 or 128";
  if (static_cast<int>(p.mode) >= static_cast<int>(LaserTieBreak::kCount)) return "mode out of range";
  return nullptr;
}

const char* LaserMakeKeysValidate(const LaserMakeKeysParams& p) {
  if (p.num < 0) return "num must be >= 0";
  if (p.num == 0) return nullptr;
  if (!p.keys) return "keys must be non-null";
  switch (p.mode) {
    case LaserKeyMode::kExact: return p.score && p.pos ? nullptr : "exact needs score and pos";
    case LaserKeyMode::kMagicpig: return p.best && p.pos ? nullptr : "magicpig needs best and pos";
    case LaserKeyMode::kFrequency: return p.counts ? nullptr : "frequency needs counts";
    default: return "mode out of range";
  }
}

const char* LaserSelectTopkValidate(const LaserSelectTopkParams& p) {
  if (p.num < 0 || p.k < 0) return "num and k must be >= 0";
  if (p.num > 0 && p.k > 0 && (!p.keys || !p.out)) return "keys and out must be non-null";
  return nullptr;
}

// Query statistics of K6 into stats [(2 + 8), D]: ū, var + 1e-8 (unbiased;
// unused when q = 1), then the chunk centroids. Shared order with the kernel:
// sums over t ascending, then one division.
static void TiebreakStats(const LaserTiebreakParams& p, float* stats) {
  const int D = p.head_dim, Q = p.num_query;
  auto ut = [&](int t, int c) { return p.mu ? p.u[size_t(t) * D + c] - p.mu[c] : p.u[size_t(t) * D + c]; };
  const int cs = LaserChunkRows(Q), nch = LaserNumChunks(Q);
  for (int c = 0; c < D; ++c) {
    float sum = 0.0f;
    for (int t = 0; t < Q; ++t) sum += ut(t, c);
    const float mean = sum / static_cast<float>(Q);
    float ss = 0.0f;
    for (int t = 0; t < Q; ++t) {
      const float d = ut(t, c) - mean;
      ss = std::fmaf(d, d, ss);
    }
    stats[c] = mean;
    stats[D + c] = (Q > 1 ? ss / static_cast<float>(Q - 1) : 0.0f) + kLaserMahalanobisEps;
    for (int k = 0; k < nch; ++k) {
      const int t0 = k * cs, t1 = std::min(Q, t0 + cs);
      float s = 0.0f;
      for (int t = t0; t < t1; ++t) s += ut(t, c);
      stats[size_t(2 + k) * D + c] = t1 > t0 ? s / static_cast<float>(t1 - t0) : 0.0f;
    }
  }
}

bool LaserTiebreakRef(const LaserTiebreakParams& p) {
  if (LaserTiebreakValidate(p) != nullptr) return false;
  const int D = p.head_dim, Q = p.num_query;
  std::vector<float> stats(size_t(2 + kLaserMaxChunks) * D);
  TiebreakStats(p, stats.data());
  if (p.stats) std::copy(stats.begin(), stats.end(), p.stats);
  LaserTieBreak mode = p.mode;
  if (mode == LaserTieBreak::kMahalanobis && Q == 1) mode = LaserTieBreak::kL2;
  const int cs = LaserChunkRows(Q), nch = LaserNumChunks(Q);
  std::vector<float> x(D);
  // Squared distance of x to a row of D fp32 values, c ascending.
  auto sq = [&](const float* y) {
    float acc = 0.0f;
    for (int c = 0; c < D; ++c) {
      const float d = x[c] - y[c];
      acc = std::fmaf(d, d, acc);
    }
    return acc;
  };
  std::vector<float> urow(D);
  for (int j = 0; j < p.num_cand; ++j) {
    for (int c = 0; c < D; ++c) x[c] = p.mu ? p.v[size_t(j) * D + c] - p.mu[c] : p.v[size_t(j) * D + c];
    float d2 = 0.0f;
    switch (mode) {
      case LaserTieBreak::kL2: d2 = sq(stats.data()); break;
      case LaserTieBreak::kMaxSim:
        d2 = INFINITY;
        for (int t = 0; t < Q; ++t) {
          for (int c = 0; c < D; ++c) urow[c] = p.mu ? p.u[size_t(t) * D + c] - p.mu[c] : p.u[size_t(t) * D + c];
          d2 = std::min(d2, sq(urow.data()));
        }
        break;
      case LaserTieBreak::kMahalanobis:
        for (int c = 0; c < D; ++c) {
          const float d = x[c] - stats[c];
          d2 += (d * d) / stats[D + c];
        }
        break;
      case LaserTieBreak::kPartitionedCentroid:
        d2 = INFINITY;
        for (int k = 0; k < nch; ++k)
          if (k * cs < Q) d2 = std::min(d2, sq(&stats[size_t(2 + k) * D]));
        break;
      default: d2 = 0.0f; break;
    }
    p.dist[j] = std::sqrt(d2);
  }
  return true;
}

bool LaserMakeKeysRef(const LaserMakeKeysParams& p) {
  if (LaserMakeKeysValidate(p) != nullptr) return false;
  for (int i = 0; i < p.num; ++i) {
    switch (p.mode) {
      case LaserKeyMode::kExact:
        p.keys[i] = LaserExactKey(p.score[p.score_rows ? p.score_rows[i] : i], p.pos[i]);
        break;
      case LaserKeyMode::kMagicpig: p.keys[i] = LaserMagicpigKey(p.best[i], p.pos[i]); break;
      default: p.keys[i] = LaserFrequencyKey(p.counts[i], p.dist ? p.dist[i] : 0.0f); break;
    }
  }
  return true;
}

bool LaserSelectTopkRef(const LaserSelectTopkParams& p) {
  if (LaserSelectTopkValidate(p) != nullptr) return false;
  const int keep = std::min(p.k, p.num);
  if (keep == 0) return true;
  std::vector<int32_t> idx(p.num);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return p.keys[a] > p.keys[b]; });
  idx.resize(keep);
  std::sort(idx.begin(), idx.end());
  std::copy(idx.begin(), idx.end(), p.out);
  return true;
}

}  // namespace kvstream
