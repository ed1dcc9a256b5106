// Internal helper of the AKV CPU twins (attention, score update): one KV
// head's hot ++ warm rows as fp32 row pointers. An fp32 hot tier is read in
// place; bf16/fp16 hot rows are converted and warm rows dequantized (the
// exact x^ of akv_quant.h) into owned storage.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/akv/akv_layout.h"
#include "kernels/akv/akv_quant.h"
#include "kernels/common/half_bits.h"

namespace kvstream::akv_ref {

// q . k over D floats: fp32 products in 8 independent partial sums (so the
// compiler can vectorise without reassociating), summed in double.
inline double Dot(const float* q, const float* k, int D) {
  float acc[8] = {};
  for (int d = 0; d < D; d += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += q[d + u] * k[d + u];
  }
  double s = 0.0;
  for (int u = 0; u < 8; ++u) s += acc[u];
  return s;
}

// Row pointers (D floats each) of one KV head's hot ++ warm tokens.
struct HeadRows {
  std::vector<const float*> k, v;
  std::vector<int32_t> pos;
  std::vector<float> hot_store, warm_store;  // converted hot rows, dequantized warm rows
};

inline void GatherHead(const AkvLayout& lay, const AkvTiers& t, int n_hot, int n_warm, int kvh, HeadRows* r,
                       bool with_v = true) {
  const int D = lay.head_dim, Hkv = lay.num_kv_heads, Gn = lay.Groups(), cb = lay.CodeBytes();
  const int n = n_hot + n_warm;
  r->k.resize(n);
  r->v.resize(n);
  r->pos.resize(n);
  const bool fp32 = lay.dtype == KvDType::kFp32;
  if (!fp32) r->hot_store.resize(static_cast<size_t>(n_hot) * 2 * D);
  r->warm_store.resize(static_cast<size_t>(n_warm) * 2 * D);
  for (int j = 0; j < n_hot; ++j) {
    const int64_t off = (static_cast<int64_t>(j) * Hkv + kvh) * D;
    r->pos[j] = t.hot_pos[j];
    if (fp32) {
      r->k[j] = static_cast<const float*>(t.hot_k) + off;
      r->v[j] = static_cast<const float*>(t.hot_v) + off;
      continue;
    }
    float* kd = &r->hot_store[static_cast<size_t>(j) * 2 * D];
    float* vd = kd + D;
    for (int d = 0; d < D; ++d) kd[d] = LoadAsFloat(t.hot_k, off + d, lay.dtype);
    if (with_v) {
      for (int d = 0; d < D; ++d) vd[d] = LoadAsFloat(t.hot_v, off + d, lay.dtype);
    }
    r->k[j] = kd;
    r->v[j] = vd;
  }
  for (int j = 0; j < n_warm; ++j) {
    const int64_t slice = static_cast<int64_t>(j) * Hkv + kvh;
    float* kd = &r->warm_store[static_cast<size_t>(j) * 2 * D];
    float* vd = kd + D;
    AkvDequantRowHost(t.warm_k + slice * cb, t.warm_k_scale + slice * Gn, t.warm_k_zero + slice * Gn, D,
                      lay.warm_bits, lay.group_size, kd);
    if (with_v) {
      AkvDequantRowHost(t.warm_v + slice * cb, t.warm_v_scale + slice * Gn, t.warm_v_zero + slice * Gn, D,
                        lay.warm_bits, lay.group_size, vd);
    }
    r->k[n_hot + j] = kd;
    r->v[n_hot + j] = vd;
    r->pos[n_hot + j] = t.warm_pos[j];
  }
}

}  // namespace kvstream::akv_ref
