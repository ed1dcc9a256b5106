// CPU twins of K1 laser_window_scores, K1b laser_pool_scores and K2 laser_head_mean (formulas in
// laser_score.h; laser_kv.md §4.3 steps 4-5) and their validators. The CPU
// engine runs these on fp32 KV; the CUDA tests compare the kernels with them.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/laser_kv/laser_score.h"

namespace kvstream {

size_t LaserWindowScoresWorkspaceBytes(int num_heads, int num_query) {
  return (2 + 2 * size_t{kLaserScoreMaxSplits}) * static_cast<size_t>(num_heads) * static_cast<size_t>(num_query) *
         sizeof(float);
}

const char* LaserWindowScoresValidate(const LaserWindowScoresParams& p) {
  if (!p.q || !p.scores) return "q and scores must be non-null";
  if (p.num_heads < 1 || p.num_kv_heads < 1 || p.num_kv_heads > p.num_heads)
    return "num_heads and num_kv_heads must be >= 1 with num_kv_heads <= num_heads";
  if (!LaserHeadDimOk(p.head_dim)) return "head_dim must be 64 or 128";
  if (p.num_query < 1) return "num_query must be >= 1";
  if (!std::isfinite(p.scale) || p.scale <= 0.0f) return "scale must be finite and > 0";
  if (!LaserDTypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  int64_t wn = 0;
  if (!LaserSegmentsOk(p.seg, 2, false, &wn)) return "seg: len >= 0 and k non-null for every used segment";
  if (wn < 1) return "the window (seg[0].len + seg[1].len) must hold >= 1 key";
  return nullptr;
}

const char* LaserHeadMeanValidate(const LaserHeadMeanParams& p) {
  if (p.num_rows < 0) return "num_rows must be >= 0";
  if (p.num_rows > 0 && !p.out) return "out must be non-null";
  if (p.num_kv_heads < 1) return "num_kv_heads must be >= 1";
  if (!LaserHeadDimOk(p.head_dim)) return "head_dim must be 64 or 128";
  if (!LaserDTypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  int64_t total = 0;
  if (!LaserSegmentsOk(p.seg, kLaserMaxSegments, false, &total))
    return "seg: len >= 0 and k non-null for every used segment";
  if (!p.rows && p.num_rows > total) return "rows == nullptr needs num_rows <= total segment rows";
  return nullptr;
}

const char* LaserPoolScoresValidate(const LaserPoolScoresParams& p) {
  if (p.num < 0) return "num must be >= 0";
  if (p.radius < 0 || p.radius > kLaserMaxPoolRadius) return "radius must be in [0, 64]";
  if (p.num > 0 && (!p.scores || !p.pos || !p.out)) return "scores, pos and out must be non-null";
  if (p.num > 0 && p.out == p.scores) return "out must not alias scores";
  return nullptr;
}

namespace {

// Segment and row of concatenated index r (laser_common.h); seg < 0 when r is
// out of range.
struct RowRef {
  int seg = -1;
  int row = 0;
};
RowRef Locate(const LaserSegment* segs, int n, int64_t r) {
  if (r < 0) return {};
  for (int s = 0; s < n; ++s) {
    if (r < segs[s].len) return {s, static_cast<int>(r)};
    r -= segs[s].len;
  }
  return {};
}

// fp32 dot product with 8 independent partial sums: the compiler vectorises
// it, which matters because the CPU engine runs this twin on every layer of
// every block (H*q*Wn*D per layer). D is a multiple of 8.
float Dot(const float* a, const float* b, int d) {
  float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int c = 0; c < d; c += 8)
    for (int x = 0; x < 8; ++x) part[x] += a[c + x] * b[c + x];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace

bool LaserWindowScoresRef(const LaserWindowScoresParams& p) {
  if (LaserWindowScoresValidate(p) != nullptr) return false;
  const int H = p.num_heads, Hkv = p.num_kv_heads, D = p.head_dim, Q = p.num_query;
  const int wn = p.seg[0].len + p.seg[1].len;
  const int64_t qst = p.q_stride_t ? p.q_stride_t : int64_t(H) * D, qsh = p.q_stride_h ? p.q_stride_h : D;
  // Window keys of each KV head as fp32 rows (the twin favours clarity).
  std::vector<float> keys(size_t(Hkv) * wn * D);
  for (int g = 0; g < Hkv; ++g) {
    int j = 0;
    for (int s = 0; s < 2; ++s) {
      const LaserSegStrides st = LaserStridesOf(p.seg[s], Hkv, D);
      for (int r = 0; r < p.seg[s].len; ++r, ++j)
        for (int c = 0; c < D; ++c)
          keys[(size_t(g) * wn + j) * D + c] = LoadAsFloat(p.seg[s].k, size_t(g * st.h + r * st.j + c), p.dtype);
    }
  }
  std::vector<double> acc(wn, 0.0), z(wn);
  std::vector<float> qrow(D);
  for (int h = 0; h < H; ++h) {
    const int g = LaserKvHeadOf(h, H, Hkv);
    for (int t = 0; t < Q; ++t) {
      for (int c = 0; c < D; ++c) qrow[c] = LoadAsFloat(p.q, size_t(t * qst + h * qsh + c), p.dtype);
      double m = -INFINITY;
      for (int j = 0; j < wn; ++j) {
        z[j] = double(Dot(qrow.data(), &keys[(size_t(g) * wn + j) * D], D)) * p.scale;
        m = std::max(m, z[j]);
      }
      double zs = 0.0;
      for (int j = 0; j < wn; ++j) zs += std::exp(z[j] - m);
      for (int j = 0; j < wn; ++j) acc[j] += std::exp(z[j] - m) / zs;
      if (p.row_stats) {
        p.row_stats[size_t(h) * Q + t] = static_cast<float>(m);
        p.row_stats[size_t(H + h) * Q + t] = static_cast<float>(zs);
      }
    }
  }
  for (int j = 0; j < wn; ++j) p.scores[j] += static_cast<float>(acc[j]);
  return true;
}

bool LaserPoolScoresRef(const LaserPoolScoresParams& p) {
  if (LaserPoolScoresValidate(p) != nullptr) return false;
  for (int j = 1; j < p.num; ++j) {
    if (p.pos[j] <= p.pos[j - 1]) return false;  // NOTE(laser): the kernel trusts the order; the twin checks it
  }
  for (int j = 0; j < p.num; ++j) p.out[j] = LaserPooledScore(p.scores, p.pos, p.num, p.radius, j);
  return true;
}

bool LaserHeadMeanRef(const LaserHeadMeanParams& p) {
  if (LaserHeadMeanValidate(p) != nullptr) return false;
  const int Hkv = p.num_kv_heads, D = p.head_dim;
  for (int i = 0; i < p.num_rows; ++i) {
    const RowRef ref = Locate(p.seg, kLaserMaxSegments, p.rows ? p.rows[i] : i);
    if (ref.seg < 0) return false;  // NOTE(laser): rows are trusted by the kernel; the twin reports it
  }
  for (int i = 0; i < p.num_rows; ++i) {
    const RowRef ref = Locate(p.seg, kLaserMaxSegments, p.rows ? p.rows[i] : i);
    const LaserSegment& s = p.seg[ref.seg];
    const LaserSegStrides st = LaserStridesOf(s, Hkv, D);
    for (int c = 0; c < D; ++c) {
      float sum = 0.0f;
      for (int g = 0; g < Hkv; ++g) sum += LoadAsFloat(s.k, size_t(g * st.h + ref.row * st.j + c), p.dtype);
      p.out[size_t(i) * D + c] = sum / static_cast<float>(Hkv);
    }
  }
  return true;
}

}  // namespace kvstream
