// CPU twin of K8 laser_compact_kv (laser_compact.h; laser_kv.md §4.3 step 6):
// a byte copy of each kept row of every layer and KV head, bit-exact with
// the kernel for every dtype.
#include <cstring>
#include <vector>

#include "kernels/laser_kv/laser_compact.h"

namespace kvstream {

const char* LaserCompactValidate(const LaserCompactParams& p) {
  if (p.num_rows < 0) return "num_rows must be >= 0";
  if (p.num_rows > 0 && (!p.rows || !p.k_out || !p.v_out)) return "rows, k_out and v_out must be non-null";
  if (p.num_layers < 1 || p.num_kv_heads < 1) return "num_layers and num_kv_heads must be >= 1";
  if (!LaserHeadDimOk(p.head_dim)) return "head_dim must be 64 or 128";
  if (!LaserDTypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  int64_t total = 0;
  if (!LaserSegmentsOk(p.seg, kLaserMaxSegments, true, &total))
    return "seg: len >= 0 and k, v, pos non-null for every used segment";
  return nullptr;
}

bool LaserCompactRef(const LaserCompactParams& p) {
  if (LaserCompactValidate(p) != nullptr) return false;
  const int Ly = p.num_layers, Hkv = p.num_kv_heads, D = p.head_dim, M = p.num_rows;
  const size_t esz = KvDTypeSize(p.dtype), row_bytes = size_t(D) * esz;
  const int64_t osj = p.out_stride_j ? p.out_stride_j : D;
  const int64_t osh = p.out_stride_h ? p.out_stride_h : int64_t(M) * D;
  const int64_t osl = p.out_stride_l ? p.out_stride_l : int64_t(Hkv) * M * D;
  // Resolve every row first: nothing is written when one is out of range.
  std::vector<int> seg_of(M), row_of(M);
  for (int i = 0; i < M; ++i) {
    int64_t r = p.rows[i];
    int s = 0;
    while (s < kLaserMaxSegments && r >= p.seg[s].len) r -= p.seg[s++].len;
    if (p.rows[i] < 0 || s == kLaserMaxSegments) return false;
    seg_of[i] = s;
    row_of[i] = static_cast<int>(r);
  }
  auto* ko = static_cast<char*>(p.k_out);
  auto* vo = static_cast<char*>(p.v_out);
  for (int i = 0; i < M; ++i) {
    const LaserSegment& s = p.seg[seg_of[i]];
    const LaserSegStrides st = LaserStridesOf(s, Hkv, D);
    const auto* ks = static_cast<const char*>(s.k);
    const auto* vs = static_cast<const char*>(s.v);
    for (int l = 0; l < Ly; ++l)
      for (int g = 0; g < Hkv; ++g) {
        const int64_t src = l * st.l + g * st.h + row_of[i] * st.j;
        const int64_t dst = l * osl + g * osh + i * osj;
        std::memcpy(ko + dst * esz, ks + src * esz, row_bytes);
        std::memcpy(vo + dst * esz, vs + src * esz, row_bytes);
      }
    if (p.pos_out) p.pos_out[i] = s.pos[row_of[i]];
  }
  return true;
}

}  // namespace kvstream
