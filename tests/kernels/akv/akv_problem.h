// Random AKV tier problems (host buffers) and an independent naive fp64
// attention, shared by the CPU twin tests and the CUDA tests of kernels/akv.
//
// Positions are a random subset of [0, P) (gaps = rows that went cold), dealt
// to hot and warm rows in random order (tiers are unsorted). The last M
// positions are the step's new rows and sit in hot; query row i has position
// P - M + i. Every slot past n_hot / n_warm holds NaN (hot values, warm
// scales) so reading it poisons the result.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/akv/akv.h"
#include "kernels/common/half_bits.h"

namespace kvstream::testing {

struct AkvShape {
  int num_heads = 8, num_kv_heads = 2, head_dim = 64, bits = 4, group_size = 32;
  int n_hot = 40, n_warm = 60, rows = 1;  // rows = M (query rows, the newest hot rows)
  int spare_hot = 7, spare_warm = 9;      // capacity past the live rows
  int layers = 1;
  int gaps = 13;                          // positions below P held by no tier
  KvDType dtype = KvDType::kFp32;
};

struct AkvProblem {
  AkvShape s;
  AkvLayout lay;
  int P = 0;                                 // tokens seen
  std::vector<uint8_t> hot_k, hot_v;         // [L, C_hot, Hkv, D] dtype
  std::vector<int32_t> hot_pos;              // [L, C_hot]
  std::vector<float> hot_score;              // [L, C_hot]
  std::vector<uint8_t> warm_k, warm_v;       // [L, C_warm, Hkv, Cb]
  std::vector<uint16_t> wks, wkz, wvs, wvz;  // [L, C_warm, Hkv, Gn]
  std::vector<int32_t> warm_pos;             // [L, C_warm]
  std::vector<float> warm_score, warm_a;     // [L, C_warm]
  std::vector<int32_t> counts;               // [L, kAkvCountSlots]
  std::vector<uint8_t> q;                    // [M, Hq, D] dtype (same for every layer)
  std::vector<int32_t> q_pos;                // [M]

  AkvTiers Tiers() {
    AkvTiers t;
    t.hot_k = hot_k.data();
    t.hot_v = hot_v.data();
    t.hot_pos = hot_pos.data();
    t.hot_score = hot_score.data();
    t.warm_k = warm_k.data();
    t.warm_v = warm_v.data();
    t.warm_k_scale = wks.data();
    t.warm_k_zero = wkz.data();
    t.warm_v_scale = wvs.data();
    t.warm_v_zero = wvz.data();
    t.warm_pos = warm_pos.data();
    t.warm_score = warm_score.data();
    t.warm_a = warm_a.data();
    t.counts = counts.data();
    return t;
  }
  size_t OutElems() const { return static_cast<size_t>(s.rows) * s.num_heads * s.head_dim; }

  AkvAttentionParams Attention(void* out, float* lse, int layer = 0, int splits = 1, float* po = nullptr,
                               float* pl = nullptr) {
    AkvAttentionParams p;
    p.layout = lay;
    p.tiers = Tiers();
    p.layer = layer;
    p.q = q.data();
    p.q_pos = q_pos.data();
    p.out = out;
    p.lse = lse;
    p.partial_out = po;
    p.partial_lse = pl;
    p.num_rows = s.rows;
    p.num_heads = s.num_heads;
    p.num_splits = splits;
    p.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
    return p;
  }
};

inline float RandomValue(std::mt19937& rng, bool normal, float scale) {
  if (normal) return std::normal_distribution<float>(0.0f, scale)(rng);
  return std::uniform_real_distribution<float>(-scale, scale)(rng);
}

inline AkvProblem MakeAkvProblem(const AkvShape& s, uint32_t seed) {
  AkvProblem pr;
  pr.s = s;
  std::mt19937 rng(seed);
  AkvLayout& lay = pr.lay;
  lay.num_kv_heads = s.num_kv_heads;
  lay.head_dim = s.head_dim;
  lay.warm_bits = s.bits;
  lay.group_size = std::min(s.group_size, s.head_dim);
  lay.hot_capacity = s.n_hot + s.spare_hot;
  lay.warm_capacity = s.n_warm + s.spare_warm;
  lay.dtype = s.dtype;
  const int L = s.layers, D = s.head_dim, Hkv = s.num_kv_heads, Gn = lay.Groups(), cb = lay.CodeBytes();
  const size_t esz = KvDTypeSize(s.dtype);
  const size_t hot_elems = static_cast<size_t>(L) * lay.hot_capacity * Hkv * D;
  const size_t warm_rows = static_cast<size_t>(L) * lay.warm_capacity;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  pr.hot_k.assign(hot_elems * esz, 0);
  pr.hot_v.assign(hot_elems * esz, 0);
  for (size_t i = 0; i < hot_elems; ++i) {
    StoreFromFloat(pr.hot_k.data(), i, nan, s.dtype);
    StoreFromFloat(pr.hot_v.data(), i, nan, s.dtype);
  }
  pr.hot_pos.assign(static_cast<size_t>(L) * lay.hot_capacity, -7);
  pr.hot_score.assign(pr.hot_pos.size(), nan);
  pr.warm_k.assign(warm_rows * Hkv * cb, 0xff);
  pr.warm_v.assign(warm_rows * Hkv * cb, 0xff);
  for (auto* v : {&pr.wks, &pr.wkz, &pr.wvs, &pr.wvz}) v->assign(warm_rows * Hkv * Gn, 0x7e00);  // NaN
  pr.warm_pos.assign(warm_rows, -7);
  pr.warm_score.assign(warm_rows, nan);
  pr.warm_a.assign(warm_rows, nan);
  pr.counts.assign(static_cast<size_t>(L) * kAkvCountSlots, 0);

  const int live = s.n_hot + s.n_warm;
  const int fresh = std::min(s.rows, s.n_hot);  // new rows present in hot (all, unless hot is tiny)
  pr.P = live + s.gaps + (s.rows - fresh);
  std::vector<float> row(D);
  for (int l = 0; l < L; ++l) {
    // Old positions: a random subset of [0, P - M), the rest of hot gets P-M..P-1.
    std::vector<int32_t> old(pr.P - s.rows);
    std::iota(old.begin(), old.end(), 0);
    std::shuffle(old.begin(), old.end(), rng);
    old.resize(live - fresh);
    std::vector<int32_t> hot_p(old.begin(), old.begin() + (s.n_hot - fresh));
    std::vector<int32_t> warm_p(old.begin() + (s.n_hot - fresh), old.end());
    for (int i = s.rows - fresh; i < s.rows; ++i) hot_p.push_back(pr.P - s.rows + i);
    std::shuffle(hot_p.begin(), hot_p.end(), rng);
    int32_t* cnt = &pr.counts[static_cast<size_t>(l) * kAkvCountSlots];
    cnt[kAkvNHot] = s.n_hot;
    cnt[kAkvNWarm] = s.n_warm;
    for (int j = 0; j < s.n_hot; ++j) {
      const size_t r = static_cast<size_t>(l) * lay.hot_capacity + j;
      pr.hot_pos[r] = hot_p[j];
      pr.hot_score[r] = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
      for (int e = 0; e < Hkv * D; ++e) {
        StoreFromFloat(pr.hot_k.data(), r * Hkv * D + e, RandomValue(rng, true, 1.0f), s.dtype);
        StoreFromFloat(pr.hot_v.data(), r * Hkv * D + e, RandomValue(rng, false, 1.0f), s.dtype);
      }
    }
    for (int j = 0; j < s.n_warm; ++j) {
      const size_t r = static_cast<size_t>(l) * lay.warm_capacity + j;
      pr.warm_pos[r] = warm_p[j];
      pr.warm_score[r] = std::uniform_real_distribution<float>(0.0f, 1.0f)(rng);
      pr.warm_a[r] = std::uniform_real_distribution<float>(0.0f, 0.1f)(rng);
      for (int h = 0; h < Hkv; ++h) {
        const size_t sl = r * Hkv + h;
        for (int d = 0; d < D; ++d) row[d] = RandomValue(rng, true, 1.0f);
        AkvQuantizeRowHost(row.data(), D, s.bits, lay.group_size, &pr.warm_k[sl * cb], &pr.wks[sl * Gn],
                           &pr.wkz[sl * Gn]);
        for (int d = 0; d < D; ++d) row[d] = RandomValue(rng, false, 1.0f);
        AkvQuantizeRowHost(row.data(), D, s.bits, lay.group_size, &pr.warm_v[sl * cb], &pr.wvs[sl * Gn],
                           &pr.wvz[sl * Gn]);
      }
    }
  }
  const size_t qn = static_cast<size_t>(s.rows) * s.num_heads * D;
  pr.q.assign(qn * esz, 0);
  for (size_t i = 0; i < qn; ++i) StoreFromFloat(pr.q.data(), i, RandomValue(rng, true, 1.5f), s.dtype);
  for (int i = 0; i < s.rows; ++i) pr.q_pos.push_back(pr.P - s.rows + i);
  return pr;
}

// Problems of one shape family (heads, dims, bits, group, dtype; sizes and
// capacities differ, one query row each) as one batched decode launch
// (akv_attention.h): q rows side by side, the launch layout's capacities the
// largest.
struct AkvBatch {
  std::vector<AkvProblem> prs;
  std::vector<uint8_t> q;  // [B, Hq, D] dtype
  AkvLayout layout;

  int rows() const { return static_cast<int>(prs.size()); }
  size_t OutElems() const { return prs.size() * prs[0].OutElems(); }
  // Row i's descriptor at `layer` over tiers t[i] (layer 0 pointers: the
  // problem's own or a device copy) with position pos[i].
  std::vector<AkvAttnSeq> Rows(int layer, const std::vector<AkvTiers>& t, const std::vector<const int32_t*>& pos) {
    std::vector<AkvAttnSeq> r;
    for (int i = 0; i < rows(); ++i)
      r.push_back(AkvAttnSeq{AkvTiersAtLayer(t[i], prs[i].lay, layer), pos[i], prs[i].lay.hot_capacity,
                             prs[i].lay.warm_capacity});
    return r;
  }
  std::vector<AkvAttnSeq> HostRows(int layer) {
    std::vector<AkvTiers> t;
    std::vector<const int32_t*> pos;
    for (AkvProblem& pr : prs) t.push_back(pr.Tiers()), pos.push_back(pr.q_pos.data());
    return Rows(layer, t, pos);
  }
  AkvAttentionParams Attention(const AkvAttnBatch* batch, const void* qp, void* out, float* lse, int splits,
                               float* po, float* pl) const {
    AkvAttentionParams p;
    p.layout = layout;
    p.batch = batch;
    p.q = qp;
    p.out = out;
    p.lse = lse;
    p.partial_out = po;
    p.partial_lse = pl;
    p.num_rows = rows();
    p.num_heads = prs[0].s.num_heads;
    p.num_splits = splits;
    p.scale = 1.0f / std::sqrt(static_cast<float>(prs[0].s.head_dim));
    return p;
  }
};

// Row pointers to n consecutive descriptors.
inline AkvAttnBatch BatchOf(const AkvAttnSeq* rows, int n) {
  AkvAttnBatch b;
  for (int i = 0; i < n; ++i) b.seq[i] = rows + i;
  return b;
}

inline AkvBatch MakeAkvBatch(const std::vector<AkvShape>& shapes, uint32_t seed) {
  AkvBatch b;
  for (size_t i = 0; i < shapes.size(); ++i) b.prs.push_back(MakeAkvProblem(shapes[i], seed + 17 * i));
  b.layout = b.prs[0].lay;
  for (AkvProblem& pr : b.prs) {
    b.layout.hot_capacity = std::max(b.layout.hot_capacity, pr.lay.hot_capacity);
    b.layout.warm_capacity = std::max(b.layout.warm_capacity, pr.lay.warm_capacity);
    b.q.insert(b.q.end(), pr.q.begin(), pr.q.end());
  }
  return b;
}

// Element e of a packed code row, decoded from first principles.
inline int NaiveCode(const uint8_t* row, int e, int bits) {
  const int per_byte = 8 / bits;
  return (row[e / per_byte] >> ((e % per_byte) * bits)) & ((1 << bits) - 1);
}

struct NaiveResult {
  std::vector<double> out;  // [M, Hq, D]
  std::vector<double> lse;  // [M, Hq]
};

// Naive fp64 attention of layer `layer` over every live hot and warm row.
inline NaiveResult NaiveAkvAttention(const AkvProblem& pr, int layer) {
  const AkvShape& s = pr.s;
  const AkvLayout& lay = pr.lay;
  const int D = s.head_dim, Hkv = s.num_kv_heads, G = s.num_heads / Hkv, g = lay.group_size;
  const int Gn = lay.Groups(), cb = lay.CodeBytes();
  const int32_t* cnt = &pr.counts[static_cast<size_t>(layer) * kAkvCountSlots];
  const int n_hot = cnt[kAkvNHot], n_warm = cnt[kAkvNWarm];
  NaiveResult r;
  r.out.assign(pr.OutElems(), 0.0);
  r.lse.assign(static_cast<size_t>(s.rows) * s.num_heads, -std::numeric_limits<double>::infinity());
  for (int i = 0; i < s.rows; ++i) {
    for (int h = 0; h < s.num_heads; ++h) {
      const int kvh = h / G;
      std::vector<double> qv(D), z;
      std::vector<std::vector<double>> vs;
      for (int d = 0; d < D; ++d)
        qv[d] = LoadAsFloat(pr.q.data(), (static_cast<size_t>(i) * s.num_heads + h) * D + d, s.dtype);
      auto add = [&](const std::vector<double>& k, const std::vector<double>& v) {
        double dot = 0.0;
        for (int d = 0; d < D; ++d) dot += qv[d] * k[d];
        z.push_back(dot / std::sqrt(static_cast<double>(D)));
        vs.push_back(v);
      };
      std::vector<double> k(D), v(D);
      for (int j = 0; j < n_hot; ++j) {
        const size_t r0 = static_cast<size_t>(layer) * lay.hot_capacity + j;
        if (pr.hot_pos[r0] > pr.q_pos[i]) continue;
        for (int d = 0; d < D; ++d) {
          k[d] = LoadAsFloat(pr.hot_k.data(), (r0 * Hkv + kvh) * D + d, s.dtype);
          v[d] = LoadAsFloat(pr.hot_v.data(), (r0 * Hkv + kvh) * D + d, s.dtype);
        }
        add(k, v);
      }
      for (int j = 0; j < n_warm; ++j) {
        const size_t r0 = static_cast<size_t>(layer) * lay.warm_capacity + j;
        if (pr.warm_pos[r0] > pr.q_pos[i]) continue;
        const size_t sl = r0 * Hkv + kvh;
        for (int d = 0; d < D; ++d) {
          const size_t gi = sl * Gn + d / g;
          k[d] = NaiveCode(&pr.warm_k[sl * cb], d, s.bits) * static_cast<double>(HalfBitsToFloat(pr.wks[gi])) +
                 HalfBitsToFloat(pr.wkz[gi]);
          v[d] = NaiveCode(&pr.warm_v[sl * cb], d, s.bits) * static_cast<double>(HalfBitsToFloat(pr.wvs[gi])) +
                 HalfBitsToFloat(pr.wvz[gi]);
        }
        add(k, v);
      }
      if (z.empty()) continue;
      const double mx = *std::max_element(z.begin(), z.end());
      double l = 0.0;
      for (double& x : z) l += (x = std::exp(x - mx));
      double* o = &r.out[(static_cast<size_t>(i) * s.num_heads + h) * D];
      for (size_t t = 0; t < z.size(); ++t)
        for (int d = 0; d < D; ++d) o[d] += z[t] / l * vs[t][d];
      r.lse[static_cast<size_t>(i) * s.num_heads + h] = mx + std::log(l);
    }
  }
  return r;
}

inline std::vector<double> ToDoubles(const void* buf, size_t n, KvDType t) {
  std::vector<double> r(n);
  for (size_t i = 0; i < n; ++i) r[i] = LoadAsFloat(buf, i, t);
  return r;
}

// ||got - ref|| / ||ref|| (infinity if got has a non-finite element).
inline double RelErr(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// A cold scan's promotion stage (akv_cold_append): S rows per layer in the
// warm format of `src`'s layout, taken from src's warm rows (src.n_warm >= S),
// positions 100000 + 1000 l + i (held by no tier), scores a random share.
struct AkvColdAppendStage {
  int S = 0;
  std::vector<uint8_t> k, v;                 // [L, S, Hkv, Cb]
  std::vector<uint16_t> ks, kz, vs, vz;      // [L, S, Hkv, Gn]
  std::vector<int32_t> pos;                  // [L, S]
  std::vector<float> score;                  // [L, S]
  std::vector<int32_t> rows;                 // [L] staged per layer

  AkvColdStage View() {
    return AkvColdStage{k.data(), v.data(), ks.data(), kz.data(), vs.data(), vz.data(), pos.data(), score.data(), S};
  }
  // The append of this stage into every layer of `pr`'s tiers (host pointers).
  AkvColdAppendParams AppendInto(AkvProblem& pr, int warm_limit) {
    AkvColdAppendParams p;
    p.layout = pr.lay, p.tiers = pr.Tiers(), p.stage = View(), p.rows = rows.data();
    p.warm_limit = warm_limit, p.num_layers = pr.s.layers;
    return p;
  }
};

inline AkvColdAppendStage MakeColdAppendStage(const AkvProblem& src, int S, std::vector<int32_t> rows,
                                              uint32_t seed) {
  AkvColdAppendStage st;
  st.S = S;
  st.rows = std::move(rows);
  std::mt19937 rng(seed);
  const AkvLayout& lay = src.lay;
  const int L = src.s.layers;
  const size_t cr = static_cast<size_t>(lay.num_kv_heads) * lay.CodeBytes();
  const size_t gr = static_cast<size_t>(lay.num_kv_heads) * lay.Groups();
  for (int l = 0; l < L; ++l) {
    const size_t w0 = static_cast<size_t>(l) * lay.warm_capacity;
    auto take = [&](const auto& from, auto* to, size_t per_row) {
      to->insert(to->end(), from.begin() + w0 * per_row, from.begin() + (w0 + S) * per_row);
    };
    take(src.warm_k, &st.k, cr);
    take(src.warm_v, &st.v, cr);
    take(src.wks, &st.ks, gr);
    take(src.wkz, &st.kz, gr);
    take(src.wvs, &st.vs, gr);
    take(src.wvz, &st.vz, gr);
    for (int i = 0; i < S; ++i) {
      st.pos.push_back(100000 + 1000 * l + i);
      st.score.push_back(std::uniform_real_distribution<float>(0.05f, 1.0f)(rng));
    }
  }
  return st;
}

// Fills n elements of a dtype buffer with NaN.
inline void PoisonOut(void* buf, size_t n, KvDType t) {
  for (size_t i = 0; i < n; ++i) StoreFromFloat(buf, i, std::numeric_limits<float>::quiet_NaN(), t);
}

// Twin vs fp64 bound per output type (rounding out to the type dominates).
inline double OutBound(KvDType t) { return t == KvDType::kFp32 ? 1e-5 : (t == KvDType::kFp16 ? 1e-3 : 6e-3); }

}  // namespace kvstream::testing
