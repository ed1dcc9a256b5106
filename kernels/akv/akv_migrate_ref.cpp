// CPU twins of akv_append (akv.md §4 step 1) and akv_migrate (steps 4-6
// applied): plain loops doing what the CUDA kernels do, in the same order, so
// tier buffers end bit-identical (quantization via akv_quant.h host math).
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/akv/akv_manage.h"
#include "kernels/akv/akv_quant.h"
#include "kernels/common/half_bits.h"

namespace kvstream {
namespace {

// Stable in-place removal of rows flagged in `remove` (size n_rows) from a
// buffer of n_rows rows of row_bytes bytes each.
void CompactRows(void* base, size_t row_bytes, int n_rows, const std::vector<bool>& remove) {
  uint8_t* b = static_cast<uint8_t*>(base);
  int dst = 0;
  for (int r = 0; r < n_rows; ++r) {
    if (remove[r]) continue;
    if (dst != r) std::memmove(b + dst * row_bytes, b + r * row_bytes, row_bytes);
    ++dst;
  }
}

void MigrateLayer(const AkvMigrateParams& p, int l) {
  const AkvLayout& lay = p.layout;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, l);
  int32_t* cnt = t.counts;
  const int32_t* demote = p.lists.demote + static_cast<int64_t>(l) * lay.hot_capacity;
  const int32_t* promote = p.lists.promote + static_cast<int64_t>(l) * lay.warm_capacity;
  const int32_t* cold = p.lists.cold + static_cast<int64_t>(l) * lay.warm_capacity;
  const int n_hot = cnt[kAkvNHot], n_warm = cnt[kAkvNWarm];
  const int nd = cnt[kAkvNDemote], np = cnt[kAkvNPromote], nc = cnt[kAkvNCold];
  const int D = lay.head_dim, Hkv = lay.num_kv_heads, Gn = lay.Groups(), cb = lay.CodeBytes();
  const size_t esz = KvDTypeSize(lay.dtype);
  std::vector<float> row(D);

  // Demoted hot rows -> warm slots n_warm + k (w = s, a = 0).
  int saturated = 0;
  for (int k = 0; k < nd; ++k) {
    const int src = demote[k], dst = n_warm + k;
    for (int h = 0; h < Hkv; ++h) {
      const int64_t hoff = (static_cast<int64_t>(src) * Hkv + h) * D;
      const int64_t slice = static_cast<int64_t>(dst) * Hkv + h;
      for (int d = 0; d < D; ++d) row[d] = LoadAsFloat(t.hot_k, hoff + d, lay.dtype);
      saturated += AkvQuantizeRowHost(row.data(), D, lay.warm_bits, lay.group_size, t.warm_k + slice * cb,
                                      t.warm_k_scale + slice * Gn, t.warm_k_zero + slice * Gn);
      for (int d = 0; d < D; ++d) row[d] = LoadAsFloat(t.hot_v, hoff + d, lay.dtype);
      saturated += AkvQuantizeRowHost(row.data(), D, lay.warm_bits, lay.group_size, t.warm_v + slice * cb,
                                      t.warm_v_scale + slice * Gn, t.warm_v_zero + slice * Gn);
    }
    t.warm_pos[dst] = t.hot_pos[src];
    t.warm_score[dst] = t.hot_score[src];
    t.warm_a[dst] = 0.0f;
  }
  // Promoted warm rows -> hot slots n_hot + k (s = 1.0).
  for (int k = 0; k < np; ++k) {
    const int src = promote[k], dst = n_hot + k;
    for (int h = 0; h < Hkv; ++h) {
      const int64_t slice = static_cast<int64_t>(src) * Hkv + h;
      const int64_t hoff = (static_cast<int64_t>(dst) * Hkv + h) * D;
      AkvDequantRowHost(t.warm_k + slice * cb, t.warm_k_scale + slice * Gn, t.warm_k_zero + slice * Gn, D,
                        lay.warm_bits, lay.group_size, row.data());
      for (int d = 0; d < D; ++d) StoreFromFloat(t.hot_k, hoff + d, row[d], lay.dtype);
      AkvDequantRowHost(t.warm_v + slice * cb, t.warm_v_scale + slice * Gn, t.warm_v_zero + slice * Gn, D,
                        lay.warm_bits, lay.group_size, row.data());
      for (int d = 0; d < D; ++d) StoreFromFloat(t.hot_v, hoff + d, row[d], lay.dtype);
    }
    t.hot_pos[dst] = t.warm_pos[src];
    t.hot_score[dst] = 1.0f;
  }
  // Rows leaving warm -> stage row k (codes unchanged).
  if (p.stage.k != nullptr) {
    const int64_t lrows = static_cast<int64_t>(l) * p.stage.Rows(lay);
    for (int k = 0; k < std::min(nc, p.stage.Rows(lay)); ++k) {
      const int64_t src = cold[k], dst = lrows + k;
      std::memcpy(p.stage.k + dst * Hkv * cb, t.warm_k + src * Hkv * cb, static_cast<size_t>(Hkv) * cb);
      std::memcpy(p.stage.v + dst * Hkv * cb, t.warm_v + src * Hkv * cb, static_cast<size_t>(Hkv) * cb);
      const size_t gb = static_cast<size_t>(Hkv) * Gn * 2;
      std::memcpy(p.stage.k_scale + dst * Hkv * Gn, t.warm_k_scale + src * Hkv * Gn, gb);
      std::memcpy(p.stage.k_zero + dst * Hkv * Gn, t.warm_k_zero + src * Hkv * Gn, gb);
      std::memcpy(p.stage.v_scale + dst * Hkv * Gn, t.warm_v_scale + src * Hkv * Gn, gb);
      std::memcpy(p.stage.v_zero + dst * Hkv * Gn, t.warm_v_zero + src * Hkv * Gn, gb);
      p.stage.pos[dst] = t.warm_pos[src];
      p.stage.score[dst] = t.warm_score[src];
    }
  }
  // Stable compaction: hot over n_hot + np rows, warm over n_warm + nd rows.
  std::vector<bool> rm_hot(n_hot + np, false), rm_warm(n_warm + nd, false);
  for (int k = 0; k < nd; ++k) rm_hot[demote[k]] = true;
  for (int k = 0; k < np; ++k) rm_warm[promote[k]] = true;
  for (int k = 0; k < nc; ++k) rm_warm[cold[k]] = true;
  const size_t hot_row = static_cast<size_t>(Hkv) * D * esz;
  CompactRows(t.hot_k, hot_row, n_hot + np, rm_hot);
  CompactRows(t.hot_v, hot_row, n_hot + np, rm_hot);
  CompactRows(t.hot_pos, 4, n_hot + np, rm_hot);
  CompactRows(t.hot_score, 4, n_hot + np, rm_hot);
  if (lay.warm_capacity > 0) {
    const int nw = n_warm + nd;
    CompactRows(t.warm_k, static_cast<size_t>(Hkv) * cb, nw, rm_warm);
    CompactRows(t.warm_v, static_cast<size_t>(Hkv) * cb, nw, rm_warm);
    for (uint16_t* a : {t.warm_k_scale, t.warm_k_zero, t.warm_v_scale, t.warm_v_zero})
      CompactRows(a, static_cast<size_t>(Hkv) * Gn * 2, nw, rm_warm);
    CompactRows(t.warm_pos, 4, nw, rm_warm);
    CompactRows(t.warm_score, 4, nw, rm_warm);
    CompactRows(t.warm_a, 4, nw, rm_warm);
  }
  cnt[kAkvNHot] = n_hot + np - nd;
  cnt[kAkvNWarm] = n_warm + nd - np - nc;
  cnt[kAkvTotDemoted] += nd;
  cnt[kAkvTotPromoted] += np;
  cnt[kAkvTotCold] += nc;
  cnt[kAkvTotQuantSaturations] += saturated;
}

}  // namespace

bool AkvMigrateRef(const AkvMigrateParams& p) {
  if (AkvMigrateValidate(p) != nullptr) return false;
  for (int l = 0; l < p.num_layers; ++l) MigrateLayer(p, l);
  return true;
}

bool AkvAppendRef(const AkvAppendParams& p) {
  if (AkvAppendValidate(p) != nullptr) return false;
  if (p.rows == 0) return true;
  if (p.batch != nullptr) {  // row r: a one-row append to sequence r's tiers
    for (int r = 0; r < p.rows; ++r) {
      if (p.batch->seq[r] == nullptr || AkvAttnSeqValidate(*p.batch->seq[r], p.layout) != nullptr) return false;
    }
    const int64_t stride = p.row_stride ? p.row_stride : int64_t(p.layout.num_kv_heads) * p.layout.head_dim;
    const size_t esz = KvDTypeSize(p.layout.dtype);
    for (int r = 0; r < p.rows; ++r) {
      const AkvAttnSeq& s = *p.batch->seq[r];
      AkvAppendParams one = p;
      one.batch = nullptr;
      one.layout.hot_capacity = s.hot_capacity;
      one.layout.warm_capacity = s.warm_capacity;
      one.tiers = s.tiers;
      one.layer = 0;
      one.pos = s.q_pos;
      one.k = static_cast<const uint8_t*>(p.k) + r * stride * esz;
      one.v = static_cast<const uint8_t*>(p.v) + r * stride * esz;
      one.rows = 1;
      if (!AkvAppendRef(one)) return false;
    }
    return true;
  }
  const AkvLayout& lay = p.layout;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, p.layer);
  const int n_hot = std::clamp(t.counts[kAkvNHot], 0, lay.hot_capacity);
  const int64_t row = static_cast<int64_t>(lay.num_kv_heads) * lay.head_dim;
  const int64_t stride = p.row_stride ? p.row_stride : row;
  const size_t esz = KvDTypeSize(lay.dtype);
  const int fit = std::min(p.rows, lay.hot_capacity - n_hot);
  for (int r = 0; r < fit; ++r) {
    const int dst = n_hot + r;
    std::memcpy(static_cast<uint8_t*>(t.hot_k) + dst * row * esz, static_cast<const uint8_t*>(p.k) + r * stride * esz,
                row * esz);
    std::memcpy(static_cast<uint8_t*>(t.hot_v) + dst * row * esz, static_cast<const uint8_t*>(p.v) + r * stride * esz,
                row * esz);
    t.hot_pos[dst] = p.pos[r];
    t.hot_score[dst] = 0.0f;
  }
  t.counts[kAkvNHot] = n_hot + fit;
  t.counts[kAkvTotAppendOverflow] += p.rows - fit;
  return true;
}

}  // namespace kvstream
