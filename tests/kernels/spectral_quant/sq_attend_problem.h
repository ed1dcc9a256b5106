// One K2 problem in raw coordinates (spectral_quant.md §4.4, §9 test 6): per
// KV head orthonormal V_K / V_V, K1-packed records, an optional dense bf16 or
// fp32 segment, optional QJL, positions; and the reference "reconstruct
// through K3, then dense softmax attention" the twin and the GPU must equal.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/spectral_quant/spectral_quant.h"
#include "tests/kernels/spectral_quant/sq_problem.h"

namespace kvstream::testing {

struct SqAttendShape {
  int head_dim = 128, num_kv_heads = 2, group = 4;
  int num_queries = 1, num_keys = 97, num_dense = 0;
  bool qjl = false, causal = false, shuffled_key_pos = false;
  KvDType dense_dtype = KvDType::kFp32;
};

struct SqAttendProblem {
  SqAttendShape shape;
  SqTestPlan kplan, vplan;
  std::vector<float> tables;
  std::vector<std::vector<double>> vk, vv;   // [Hkv] D x D row-major, column i = eigvec i
  std::vector<float> q_raw, q_rot, q_sketch; // [Hq, Tq, D]
  std::vector<uint32_t> krec, vrec, signs;   // [Tk, Hkv, W*]
  std::vector<uint16_t> rnorm;               // [Tk, Hkv]
  std::vector<uint8_t> dense_k, dense_v;     // [Td, Hkv, D] dense_dtype bytes
  std::vector<int32_t> q_pos, k_pos, d_pos;
  int sign_words = 0;
  float scale = 0.0f;

  int Hq() const { return shape.num_kv_heads * shape.group; }
  size_t OutSize() const { return size_t(Hq()) * shape.num_queries * shape.head_dim; }
  // Params of the host problem (host pointers); a_eig / a_dense left null.
  SqAttendParams Params() const {
    SqAttendParams p;
    const SqAttendShape& s = shape;
    p.q_rot = q_rot.data(), p.q_raw = s.num_dense ? q_raw.data() : nullptr;
    p.q_sketch = s.qjl ? q_sketch.data() : nullptr;
    p.k_records = krec.data(), p.v_records = vrec.data();
    p.k_rnorm = s.qjl ? rnorm.data() : nullptr, p.k_signs = s.qjl ? signs.data() : nullptr;
    p.sign_words = sign_words;
    p.k_plan = kplan.view(), p.v_plan = vplan.view(), p.tables = tables.data();
    p.dense_k = s.num_dense ? dense_k.data() : nullptr, p.dense_v = s.num_dense ? dense_v.data() : nullptr;
    p.dense_dtype = s.dense_dtype;
    p.q_pos = s.causal ? q_pos.data() : nullptr;
    p.k_pos = s.causal ? k_pos.data() : nullptr;
    p.d_pos = s.causal ? d_pos.data() : nullptr;
    p.num_q_heads = Hq(), p.num_kv_heads = s.num_kv_heads, p.head_dim = s.head_dim;
    p.num_queries = s.num_queries, p.num_keys = s.num_keys, p.num_dense = s.num_dense;
    p.scale = scale;
    return p;
  }
};

// x = sum_i V[:, i] z_i (raw from eigen coordinates).
inline void FromEigen(const std::vector<double>& V, const float* z, int D, double* x) {
  for (int r = 0; r < D; ++r) {
    double a = 0.0;
    for (int i = 0; i < D; ++i) a += V[size_t(r) * D + i] * z[i];
    x[r] = a;
  }
}

inline SqAttendProblem MakeSqAttendProblem(const SqAttendShape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  SqAttendProblem P;
  P.shape = s;
  const int D = s.head_dim, H = s.num_kv_heads, Hq = H * s.group, Tq = s.num_queries, Tk = s.num_keys,
            Td = s.num_dense;
  P.scale = 1.0f / std::sqrt(float(D));
  P.kplan = RandomSqPlan(H, D, &rng);
  P.vplan = RandomSqPlan(H, D, &rng, /*extra_pad_words=*/1);
  P.tables = SqTables();
  P.vk.resize(H), P.vv.resize(H);
  for (int h = 0; h < H; ++h) P.vk[h] = RandomOrthonormal(D, &rng), P.vv[h] = RandomOrthonormal(D, &rng);
  // Queries: raw Gaussian of norm ~ 3 sqrt(D) / |k| scale so the softmax is neither flat nor one-hot.
  P.q_raw = RandomNormal(size_t(Hq) * Tq * D, &rng, 1.5f);
  P.q_rot.resize(P.q_raw.size());
  for (int hq = 0; hq < Hq; ++hq)
    for (int t = 0; t < Tq; ++t) {
      const float* q = &P.q_raw[(size_t(hq) * Tq + t) * D];
      const std::vector<double>& V = P.vk[hq / s.group];
      for (int i = 0; i < D; ++i) {
        double a = 0.0;
        for (int r = 0; r < D; ++r) a += V[size_t(r) * D + i] * q[r];
        P.q_rot[(size_t(hq) * Tq + t) * D + i] = float(a);
      }
    }
  // Records by the K1 twin (with QJL: S_sem Gaussian, S' = S_sem V_K).
  const std::vector<float> zk = RandomEigen(P.kplan, Tk, &rng), zv = RandomEigen(P.vplan, Tk, &rng);
  P.krec.assign(size_t(Tk) * H * P.kplan.words, 0), P.vrec.assign(size_t(Tk) * H * P.vplan.words, 0);
  SqQuantizePackParams k1;
  k1.z = zk.data(), k1.plan = P.kplan.view(), k1.tables = P.tables.data(), k1.records = P.krec.data();
  k1.num_tokens = Tk, k1.num_kv_heads = H, k1.head_dim = D;
  std::vector<float> sprime;
  if (s.qjl) {
    P.sign_words = D / 32;
    std::vector<float> ssem = RandomNormal(size_t(H) * D * D, &rng);
    sprime.assign(ssem.size(), 0.0f);
    P.q_sketch.assign(P.q_raw.size(), 0.0f);
    for (int h = 0; h < H; ++h) {
      for (int m = 0; m < D; ++m)
        for (int c = 0; c < D; ++c) {
          double a = 0.0;
          for (int r = 0; r < D; ++r) a += double(ssem[(size_t(h) * D + m) * D + r]) * P.vk[h][size_t(r) * D + c];
          sprime[(size_t(h) * D + m) * D + c] = float(a);
        }
      for (int g = 0; g < s.group; ++g)
        for (int t = 0; t < Tq; ++t) {
          const size_t row = (size_t(h * s.group + g) * Tq + t) * D;
          for (int m = 0; m < P.kplan.d_eff[h]; ++m) {
            double a = 0.0;
            for (int r = 0; r < D; ++r) a += double(ssem[(size_t(h) * D + m) * D + r]) * P.q_raw[row + r];
            P.q_sketch[row + m] = float(a);
          }
        }
    }
    P.rnorm.assign(size_t(Tk) * H, 0), P.signs.assign(size_t(Tk) * H * P.sign_words, 0);
    k1.s_prime = sprime.data(), k1.r_norm = P.rnorm.data(), k1.signs = P.signs.data(), k1.sign_words = P.sign_words;
  }
  SqQuantizePackRef(k1);
  SqQuantizePackParams v1 = k1;
  v1.z = zv.data(), v1.plan = P.vplan.view(), v1.records = P.vrec.data();
  v1.s_prime = nullptr, v1.r_norm = nullptr, v1.signs = nullptr, v1.sign_words = 0;
  SqQuantizePackRef(v1);
  // Dense segment: raw Gaussian K/V of the same scale as the reconstructions.
  const size_t esz = KvDTypeSize(s.dense_dtype);
  P.dense_k.resize(size_t(Td) * H * D * esz), P.dense_v.resize(size_t(Td) * H * D * esz);
  const std::vector<float> dk = RandomNormal(size_t(Td) * H * D, &rng, 0.8f), dv = RandomNormal(size_t(Td) * H * D, &rng);
  for (size_t i = 0; i < dk.size(); ++i) {
    StoreFromFloat(P.dense_k.data(), i, dk[i], s.dense_dtype);
    StoreFromFloat(P.dense_v.data(), i, dv[i], s.dense_dtype);
  }
  // Positions: compressed keys 0..Tk-1 (optionally shuffled), dense Tk..Tk+Td-1, the
  // queries are the last Tq positions (a prompt chunk), one of them before every key.
  P.k_pos.resize(Tk), P.d_pos.resize(Td), P.q_pos.resize(Tq);
  for (int j = 0; j < Tk; ++j) P.k_pos[j] = j;
  if (s.shuffled_key_pos) std::shuffle(P.k_pos.begin(), P.k_pos.end(), rng);
  for (int j = 0; j < Td; ++j) P.d_pos[j] = Tk + j;
  const int last = Tk + Td - 1;
  for (int t = 0; t < Tq; ++t) P.q_pos[t] = last - (Tq - 1 - t) * std::max(1, (Tk + Td) / std::max(Tq, 1) / 2);
  if (Tq > 1) P.q_pos[0] = -1;  // sees nothing: zeros
  return P;
}

// Reference output in raw coordinates, O [Hq, Tq, D] (double math): K^ and V^
// through K3 (X^ = Z^ V^T), dense keys as stored, one softmax over both.
inline std::vector<float> SqAttendReference(const SqAttendProblem& P) {
  const SqAttendShape& s = P.shape;
  const int D = s.head_dim, H = s.num_kv_heads, Tq = s.num_queries, Tk = s.num_keys, Td = s.num_dense;
  std::vector<float> zk(size_t(Tk) * H * D), zv(size_t(Tk) * H * D);
  SqDequantParams k3;
  k3.records = P.krec.data(), k3.plan = P.kplan.view(), k3.tables = P.tables.data(), k3.zhat = zk.data();
  k3.num_tokens = Tk, k3.num_kv_heads = H, k3.head_dim = D;
  SqDequantRef(k3);
  k3.records = P.vrec.data(), k3.plan = P.vplan.view(), k3.zhat = zv.data();
  SqDequantRef(k3);
  std::vector<float> out(P.OutSize(), 0.0f);
  std::vector<double> kh(size_t(Tk) * D), vh(size_t(Tk) * D), l(Tk + Td), o(D);
  for (int h = 0; h < H; ++h) {
    for (int j = 0; j < Tk; ++j) {
      FromEigen(P.vk[h], &zk[(size_t(j) * H + h) * D], D, &kh[size_t(j) * D]);
      FromEigen(P.vv[h], &zv[(size_t(j) * H + h) * D], D, &vh[size_t(j) * D]);
    }
    for (int g = 0; g < s.group; ++g)
      for (int t = 0; t < Tq; ++t) {
        const size_t row = (size_t(h * s.group + g) * Tq + t) * D;
        double mx = -INFINITY;
        for (int j = 0; j < Tk + Td; ++j) {
          const int pos = j < Tk ? P.k_pos[j] : P.d_pos[j - Tk];
          if (s.causal && pos > P.q_pos[t]) {
            l[j] = -INFINITY;
            continue;
          }
          double dot = 0.0;
          if (j < Tk) {
            for (int r = 0; r < D; ++r) dot += P.q_raw[row + r] * kh[size_t(j) * D + r];
            if (s.qjl) {
              const int de = P.kplan.d_eff[h];
              double c = 0.0;
              for (int m = 0; m < de; ++m) {
                const bool plus = (P.signs[(size_t(j) * H + h) * P.sign_words + m / 32] >> (m % 32)) & 1u;
                c += plus ? P.q_sketch[row + m] : -P.q_sketch[row + m];
              }
              dot += std::sqrt(M_PI / 2) / de * HalfBitsToFloat(P.rnorm[size_t(j) * H + h]) * c;
            }
          } else {
            for (int r = 0; r < D; ++r)
              dot += P.q_raw[row + r] * LoadAsFloat(P.dense_k.data(), (size_t(j - Tk) * H + h) * D + r, s.dense_dtype);
          }
          l[j] = dot * P.scale;
          mx = std::max(mx, l[j]);
        }
        if (mx == -INFINITY) continue;  // no visible key: zeros
        double den = 0.0;
        std::fill(o.begin(), o.end(), 0.0);
        for (int j = 0; j < Tk + Td; ++j) {
          if (l[j] == -INFINITY) continue;
          const double w = std::exp(l[j] - mx);
          den += w;
          for (int r = 0; r < D; ++r)
            o[r] += w * (j < Tk ? vh[size_t(j) * D + r]
                                : LoadAsFloat(P.dense_v.data(), (size_t(j - Tk) * H + h) * D + r, s.dense_dtype));
        }
        for (int r = 0; r < D; ++r) out[row + r] = float(o[r] / den);
      }
  }
  return out;
}

// The engine's composition O = A_eig V_V^T + A_dense, from the kernel outputs.
inline std::vector<float> SqComposeOutput(const SqAttendProblem& P, const std::vector<float>& a_eig,
                                          const std::vector<float>& a_dense) {
  const SqAttendShape& s = P.shape;
  const int D = s.head_dim;
  std::vector<float> out(P.OutSize());
  std::vector<double> x(D);
  for (int hq = 0; hq < P.Hq(); ++hq)
    for (int t = 0; t < s.num_queries; ++t) {
      const size_t row = (size_t(hq) * s.num_queries + t) * D;
      FromEigen(P.vv[hq / s.group], &a_eig[row], D, x.data());
      for (int r = 0; r < D; ++r) out[row + r] = float(x[r] + (a_dense.empty() ? 0.0f : a_dense[row + r]));
    }
  return out;
}

}  // namespace kvstream::testing
