// CPU twin of akv_mixed_attention (akv.md §4 step 2): warm rows are
// dequantized with the same fp32 formula as the GPU (bit-identical x^), then
// per (query row, head, split) an exact two-pass softmax in double over the
// visible tokens (pos_j <= q_pos_i), and the splits merged by lse as the GPU
// merge kernel does. This is also the engine's CPU attention: per call it
// dequantizes each KV head's warm rows once and reads an fp32 hot tier in
// place, so a step costs O(M * Hq * (n_hot + n_warm) * D).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_quant.h"
#include "kernels/akv/akv_ref_rows.h"
#include "kernels/common/half_bits.h"

namespace kvstream {
namespace {

using akv_ref::GatherHead;
using akv_ref::HeadRows;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// For the G query heads q[h] (D floats each, unscaled) of one KV head:
// normalised softmax-weighted V over visible tokens [begin, end) into
// o[h*D..] (doubles), natural-log lse into lse[h] (-inf and zeros if no token
// is visible). One pass reads each K row once for all heads, a second each V
// row; scores z in double, weights exp(z - max) in double.
void AttendRange(const HeadRows& r, const float* q, int G, int D, double scale, int32_t q_pos, int begin, int end,
                 std::vector<double>& z, double* o, double* lse) {
  const int n = std::max(end - begin, 0);
  std::fill(o, o + static_cast<size_t>(G) * D, 0.0);
  z.assign(static_cast<size_t>(n) * G, kNegInf);
  std::vector<double> m(G, kNegInf), l(G, 0.0);
  for (int j = begin; j < end; ++j) {
    if (r.pos[j] > q_pos) continue;
    for (int h = 0; h < G; ++h) {
      const double zj = akv_ref::Dot(q + static_cast<size_t>(h) * D, r.k[j], D) * scale;
      z[static_cast<size_t>(j - begin) * G + h] = zj;
      m[h] = std::max(m[h], zj);
    }
  }
  for (int j = begin; j < end; ++j) {
    const double* zj = &z[static_cast<size_t>(j - begin) * G];
    if (r.pos[j] > q_pos) continue;
    const float* v = r.v[j];
    for (int h = 0; h < G; ++h) {
      if (zj[h] == kNegInf) continue;
      const double w = std::exp(zj[h] - m[h]);
      l[h] += w;
      double* oh = o + static_cast<size_t>(h) * D;
      for (int d = 0; d < D; ++d) oh[d] += w * static_cast<double>(v[d]);
    }
  }
  for (int h = 0; h < G; ++h) {
    if (m[h] == kNegInf) {
      lse[h] = kNegInf;
      continue;
    }
    for (int d = 0; d < D; ++d) o[static_cast<size_t>(h) * D + d] /= l[h];
    lse[h] = m[h] + std::log(l[h]);
  }
}

}  // namespace

namespace {

// Batched decode: row i is a one-row launch over its sequence's tiers, its
// q, out, lse and partials at row i of the batch's arrays.
bool BatchedRef(const AkvAttentionParams& p) {
  for (int i = 0; i < p.num_rows; ++i) {
    if (p.batch->seq[i] == nullptr || AkvAttnSeqValidate(*p.batch->seq[i], p.layout) != nullptr) return false;
  }
  const int64_t Hq = p.num_heads, D = p.layout.head_dim, S = p.num_splits;
  const int64_t qsm = p.q_stride_m ? p.q_stride_m : Hq * D, esz = KvDTypeSize(p.layout.dtype);
  for (int i = 0; i < p.num_rows; ++i) {
    const AkvAttnSeq& s = *p.batch->seq[i];
    AkvAttentionParams r = p;
    r.batch = nullptr;
    r.num_rows = 1;
    r.layer = 0;
    r.layout.hot_capacity = s.hot_capacity;
    r.layout.warm_capacity = s.warm_capacity;
    r.tiers = s.tiers;
    r.q_pos = s.q_pos;
    r.q = static_cast<const uint8_t*>(p.q) + i * qsm * esz;
    r.out = static_cast<uint8_t*>(p.out) + i * Hq * D * esz;
    r.lse = p.lse ? p.lse + i * Hq : nullptr;
    if (S > 1) r.partial_out = p.partial_out + i * Hq * S * D, r.partial_lse = p.partial_lse + i * Hq * S;
    if (!AkvAttentionRef(r)) return false;
  }
  return true;
}

}  // namespace

bool AkvAttentionRef(const AkvAttentionParams& p) {
  if (AkvAttentionValidate(p) != nullptr) return false;
  if (p.num_rows == 0) return true;
  if (p.batch != nullptr) return BatchedRef(p);
  const AkvLayout& lay = p.layout;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, p.layer);
  const int D = lay.head_dim, Hq = p.num_heads, G = Hq / lay.num_kv_heads, S = p.num_splits;
  const int n_hot = std::clamp(t.counts[kAkvNHot], 0, lay.hot_capacity);
  const int n_warm = std::clamp(t.counts[kAkvNWarm], 0, lay.warm_capacity);
  const int64_t qsm = p.q_stride_m ? p.q_stride_m : static_cast<int64_t>(Hq) * D;
  const int64_t qsh = p.q_stride_h ? p.q_stride_h : D;

  HeadRows rows;
  std::vector<float> q(static_cast<size_t>(G) * D);
  std::vector<double> z, part(static_cast<size_t>(S) * G * D), lse(static_cast<size_t>(S) * G), merged(D);
  for (int kvh = 0; kvh < lay.num_kv_heads; ++kvh) {
    GatherHead(lay, t, n_hot, n_warm, kvh, &rows);
    for (int i = 0; i < p.num_rows; ++i) {
      for (int g = 0; g < G; ++g) {
        for (int d = 0; d < D; ++d) q[g * D + d] = LoadAsFloat(p.q, i * qsm + (kvh * G + g) * qsh + d, lay.dtype);
      }
      for (int s = 0; s < S; ++s) {
        int b = 0, e = 0;
        AkvAttentionSplitRange(n_hot, n_warm, S, s, &b, &e);
        AttendRange(rows, q.data(), G, D, p.scale, p.q_pos[i], b, e, z, &part[static_cast<size_t>(s) * G * D],
                    &lse[static_cast<size_t>(s) * G]);
      }
      for (int g = 0; g < G; ++g) {
        const int h = kvh * G + g;
        auto part_of = [&](int s) { return &part[(static_cast<size_t>(s) * G + g) * D]; };
        double total = lse[g];
        if (S == 1) {
          std::copy(part_of(0), part_of(0) + D, merged.begin());
        } else {
          const size_t prow = (static_cast<size_t>(i) * Hq + h) * S;
          double mx = kNegInf;
          for (int s = 0; s < S; ++s) {
            const double ls = lse[static_cast<size_t>(s) * G + g];
            p.partial_lse[prow + s] = static_cast<float>(ls);
            for (int d = 0; d < D; ++d) p.partial_out[(prow + s) * D + d] = static_cast<float>(part_of(s)[d]);
            mx = std::max(mx, ls);
          }
          std::fill(merged.begin(), merged.end(), 0.0);
          total = kNegInf;
          if (mx != kNegInf) {
            double l = 0.0;
            for (int s = 0; s < S; ++s) {
              const double w = std::exp(lse[static_cast<size_t>(s) * G + g] - mx);
              l += w;
              for (int d = 0; d < D; ++d) merged[d] += w * part_of(s)[d];
            }
            for (int d = 0; d < D; ++d) merged[d] /= l;
            total = mx + std::log(l);
          }
        }
        const int64_t orow = (static_cast<int64_t>(i) * Hq + h) * D;
        for (int d = 0; d < D; ++d) StoreFromFloat(p.out, orow + d, static_cast<float>(merged[d]), lay.dtype);
        if (p.lse) p.lse[static_cast<int64_t>(i) * Hq + h] = static_cast<float>(total);
      }
    }
  }
  return true;
}

}  // namespace kvstream
