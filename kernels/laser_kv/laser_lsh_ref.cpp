// CPU twins of the LASER-KV LSH kernels (formulas in laser_lsh.h; laser_kv.md
// §4.3 step 5, §6.7, §6.8), the projection generator R and magicpig's U(p).
// K3a-K5 use the kernels' fp32 operation order (explicit fmaf), so twin and
// kernel agree bit for bit.
#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

#include "kernels/laser_kv/laser_lsh.h"

namespace kvstream {
namespace {

bool TablesOk(int L, int K) {
  return L >= 1 && L <= kLaserMaxTables && K >= 1 && K <= kLaserMaxBits && L * K <= kLaserMaxCodeBits;
}

}  // namespace

size_t LaserCollisionWorkspaceBytes(int num_tables, int num_bits) {
  const size_t words = num_bits >= 5 ? (size_t{1} << (num_bits - 5)) : 1;
  return static_cast<size_t>(num_tables) * words * sizeof(uint32_t);
}

bool LaserMakeProjection(uint64_t seed, int head_dim, int num_tables, int num_bits, float* r) {
  if (!r || head_dim < 1 || !TablesOk(num_tables, num_bits)) return false;
  constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  const size_t n = static_cast<size_t>(head_dim) * num_tables * num_bits;
  for (size_t i = 0; i < n; i += 2) {
    const uint64_t pair = i / 2;
    // LaserSplitMix64 adds gamma itself, so output n of the stream is
    // LaserSplitMix64(seed + n * gamma).
    const uint64_t a = LaserSplitMix64(seed + (2 * pair) * kGamma);
    const uint64_t b = LaserSplitMix64(seed + (2 * pair + 1) * kGamma);
    const double u1 = static_cast<double>((a >> 11) + 1) * 0x1.0p-53;  // (0, 1]: log is finite
    const double u2 = static_cast<double>(b >> 11) * 0x1.0p-53;        // [0, 1)
    const double rad = std::sqrt(-2.0 * std::log(u1));
    r[i] = static_cast<float>(rad * std::cos(kTwoPi * u2));
    if (i + 1 < n) r[i + 1] = static_cast<float>(rad * std::sin(kTwoPi * u2));
  }
  return true;
}

double LaserMagicpigU(double p, int num_bits, int num_tables) {
  const double x = std::pow(p, num_bits);
  const double L = num_tables;
  return 1.0 - std::pow(1.0 - x, L) - L * x * std::pow(1.0 - x, L - 1.0);
}

const char* LaserColumnMeanValidate(const LaserColumnMeanParams& p) {
  if (!p.v || !p.mu) return "v and mu must be non-null";
  if (p.num_rows < 1) return "num_rows must be >= 1";
  if (!LaserHeadDimOk(p.head_dim)) return "head_dim must be 64 or 128";
  return nullptr;
}

const char* LaserLshHashValidate(const LaserLshHashParams& p) {
  if (p.num_rows < 0) return "num_rows must be >= 0";
  if (!p.r) return "r must be non-null";
  if (p.num_rows > 0 && (!p.v || !p.codes)) return "v and codes must be non-null";
  if (!LaserHeadDimOk(p.head_dim)) return "head_dim must be 64 or 128";
  if (!TablesOk(p.num_tables, p.num_bits)) return "num_tables in [1, 128], num_bits in [1, 16], product <= 1024";
  return nullptr;
}

const char* LaserCollisionCountValidate(const LaserCollisionCountParams& p) {
  if (p.num_cand < 0) return "num_cand must be >= 0";
  if (p.num_query < 1 || !p.query_codes) return "num_query must be >= 1 with query_codes non-null";
  if (p.num_cand > 0 && (!p.cand_codes || !p.counts)) return "cand_codes and counts must be non-null";
  if (!TablesOk(p.num_tables, p.num_bits)) return "num_tables in [1, 128], num_bits in [1, 16], product <= 1024";
  return nullptr;
}

const char* LaserBestMatchValidate(const LaserBestMatchParams& p) {
  if (p.num_rows < 0) return "num_rows must be >= 0";
  if (p.num_query < 1 || !p.query_bits) return "num_query must be >= 1 with query_bits non-null";
  if (p.num_rows > 0 && (!p.cand_bits || !p.best)) return "cand_bits and best must be non-null";
  if (!TablesOk(p.num_tables, p.num_bits)) return "num_tables in [1, 128], num_bits in [1, 16], product <= 1024";
  return nullptr;
}

bool LaserColumnMeanRef(const LaserColumnMeanParams& p) {
  if (LaserColumnMeanValidate(p) != nullptr) return false;
  const int D = p.head_dim;
  for (int c = 0; c < D; ++c) {
    float sum = 0.0f;
    for (int i = 0; i < p.num_rows; ++i) sum += p.v[size_t(i) * D + c];
    p.mu[c] = sum / static_cast<float>(p.num_rows);
  }
  return true;
}

bool LaserLshHashRef(const LaserLshHashParams& p) {
  if (LaserLshHashValidate(p) != nullptr) return false;
  const int D = p.head_dim, L = p.num_tables, K = p.num_bits, LK = L * K, W = LaserCodeWords(L, K);
  std::vector<float> x(D);
  std::vector<uint8_t> bit(LK);
  for (int i = 0; i < p.num_rows; ++i) {
    for (int c = 0; c < D; ++c) x[c] = p.mu ? p.v[size_t(i) * D + c] - p.mu[c] : p.v[size_t(i) * D + c];
    for (int col = 0; col < LK; ++col) {
      float proj = 0.0f;
      for (int c = 0; c < D; ++c) proj = std::fmaf(x[c], p.r[size_t(c) * LK + col], proj);
      bit[col] = proj > 0.0f ? 1 : 0;  // strict (§6.7)
    }
    for (int t = 0; t < L; ++t) {
      int32_t code = 0;
      for (int k = 0; k < K; ++k) code |= int32_t(bit[t * K + k]) << k;
      p.codes[size_t(i) * L + t] = code;
    }
    if (p.bits) {
      for (int w = 0; w < W; ++w) {
        uint64_t word = 0;
        for (int b = 0; b < 64 && w * 64 + b < LK; ++b) word |= uint64_t(bit[w * 64 + b]) << b;
        p.bits[size_t(i) * W + w] = word;
      }
    }
  }
  return true;
}

bool LaserCollisionCountRef(const LaserCollisionCountParams& p) {
  if (LaserCollisionCountValidate(p) != nullptr) return false;
  const int L = p.num_tables;
  const size_t buckets = size_t{1} << p.num_bits;
  std::vector<uint8_t> active(size_t(L) * buckets, 0);
  for (int u = 0; u < p.num_query; ++u)
    for (int t = 0; t < L; ++t) {
      const uint32_t code = static_cast<uint32_t>(p.query_codes[size_t(u) * L + t]);
      if (code < buckets) active[t * buckets + code] = 1;
    }
  for (int j = 0; j < p.num_cand; ++j) {
    int n = 0;
    for (int t = 0; t < L; ++t) {
      const uint32_t code = static_cast<uint32_t>(p.cand_codes[size_t(j) * L + t]);
      n += code < buckets && active[t * buckets + code];
    }
    p.counts[j] = static_cast<uint8_t>(n);
  }
  return true;
}

bool LaserBestMatchRef(const LaserBestMatchParams& p) {
  if (LaserBestMatchValidate(p) != nullptr) return false;
  const int LK = p.num_tables * p.num_bits, W = LaserCodeWords(p.num_tables, p.num_bits);
  for (int j = 0; j < p.num_rows; ++j) {
    const uint64_t* s = p.cand_bits + size_t(p.rows ? p.rows[j] : j) * W;
    int best = 0;
    for (int u = 0; u < p.num_query; ++u) {
      const uint64_t* qb = p.query_bits + size_t(u) * W;
      int diff = 0;
      for (int w = 0; w < W; ++w) diff += std::popcount(qb[w] ^ s[w]);
      best = std::max(best, LK - diff);
    }
    p.best[j] = static_cast<uint16_t>(best);
  }
  return true;
}

}  // namespace kvstream
