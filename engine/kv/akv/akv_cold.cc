#include "engine/kv/akv/akv_cold.h"

#include <algorithm>
#include <cstring>

#include "kernels/akv/akv_quant.h"

namespace kvstream {

AkvColdTier::AkvColdTier(int num_layers, int num_kv_heads, int head_dim, int group_size, int cold_bits)
    : layers_(num_layers),
      hkv_(num_kv_heads),
      cc_(head_dim * cold_bits / 8),
      gn_(head_dim / group_size),
      row_bytes_(2 * int64_t(num_kv_heads) * cc_ + 4 * int64_t(num_kv_heads) * gn_ * 2 + 4),
      rows_(static_cast<size_t>(num_layers), 0),
      blocks_(static_cast<size_t>(num_layers)) {}

uint8_t* AkvColdTier::Array(int layer, int64_t block, int which) const {
  uint8_t* b = blocks_[layer][block].get();
  const int64_t R = kAkvColdBlockRows, codes = R * hkv_ * cc_, groups = R * hkv_ * gn_ * 2;
  if (which < 2) return b + which * codes;
  if (which < 6) return b + 2 * codes + (which - 2) * groups;
  return b + 2 * codes + 4 * groups;
}

int64_t AkvColdTier::Width(int which) const {
  return which < 2 ? int64_t(hkv_) * cc_ : (which < 6 ? int64_t(hkv_) * gn_ * 2 : 4);
}

void AkvColdTier::CopyRows(int layer, const std::vector<int64_t>& rows, AkvColdScratch* out) const {
  const size_t n = rows.size();
  out->k.resize(n * hkv_ * cc_);
  out->v.resize(n * hkv_ * cc_);
  for (auto* a : {&out->k_scale, &out->k_zero, &out->v_scale, &out->v_zero}) a->resize(n * hkv_ * gn_);
  out->pos.resize(n);
  uint8_t* dst[7] = {out->k.data(),
                     out->v.data(),
                     reinterpret_cast<uint8_t*>(out->k_scale.data()),
                     reinterpret_cast<uint8_t*>(out->k_zero.data()),
                     reinterpret_cast<uint8_t*>(out->v_scale.data()),
                     reinterpret_cast<uint8_t*>(out->v_zero.data()),
                     reinterpret_cast<uint8_t*>(out->pos.data())};
  for (size_t i = 0; i < n; ++i) {
    const int64_t block = rows[i] / kAkvColdBlockRows, off = rows[i] % kAkvColdBlockRows;
    for (int a = 0; a < 7; ++a) {
      const int64_t w = Width(a);
      std::memcpy(dst[a] + i * w, Array(layer, block, a) + off * w, static_cast<size_t>(w));
    }
  }
}

void AkvColdTier::Remove(int layer, const std::vector<int64_t>& sorted_rows) {
  if (sorted_rows.empty()) return;
  // Holes are filled from the tail (O(removed rows), not a compaction of
  // every row after the first hole: cold tiers run to 100K+ rows).
  size_t lo = 0, hi = sorted_rows.size();  // holes not filled yet: sorted_rows[lo, hi)
  int64_t last = rows_[layer] - 1;
  while (lo < hi) {
    if (sorted_rows[hi - 1] == last) {  // the tail row goes too
      --hi, --last;
      continue;
    }
    const int64_t to = sorted_rows[lo++];
    for (int a = 0; a < 7; ++a) {
      const int64_t w = Width(a);
      std::memcpy(Array(layer, to / kAkvColdBlockRows, a) + (to % kAkvColdBlockRows) * w,
                  Array(layer, last / kAkvColdBlockRows, a) + (last % kAkvColdBlockRows) * w, static_cast<size_t>(w));
    }
    --last;
  }
  rows_[layer] -= static_cast<int64_t>(sorted_rows.size());
  const size_t keep = static_cast<size_t>((rows_[layer] + kAkvColdBlockRows - 1) / kAkvColdBlockRows);
  if (blocks_[layer].size() > keep) blocks_[layer].resize(keep);
}

std::vector<AkvColdKeyRun> AkvColdTier::KeyRuns(int layer, int64_t first, int n) const {
  static constexpr int kWhich[4] = {0, 2, 3, 6};  // k codes, k scale, k zero, pos
  std::vector<AkvColdKeyRun> runs;
  for (int64_t r = first; r < first + n;) {
    const int64_t block = r / kAkvColdBlockRows, off = r % kAkvColdBlockRows;
    AkvColdKeyRun run;
    run.rows = std::min<int64_t>(kAkvColdBlockRows - off, first + n - r);
    for (int i = 0; i < 4; ++i) {
      run.width[i] = Width(kWhich[i]);
      run.src[i] = Array(layer, block, kWhich[i]) + off * run.width[i];
    }
    runs.push_back(run);
    r += run.rows;
  }
  return runs;
}

void AkvCopyKeyRuns(const std::vector<AkvColdKeyRun>& runs, uint8_t* const dst[4]) {
  int64_t at = 0;
  for (const AkvColdKeyRun& run : runs) {
    for (int i = 0; i < 4; ++i) {
      std::memcpy(dst[i] + at * run.width[i], run.src[i], static_cast<size_t>(run.rows * run.width[i]));
    }
    at += run.rows;
  }
}

void AkvColdTier::CopyKeys(int layer, int64_t first, int n, uint8_t* k, uint16_t* k_scale, uint16_t* k_zero,
                           int32_t* pos) const {
  uint8_t* const dst[4] = {k, reinterpret_cast<uint8_t*>(k_scale), reinterpret_cast<uint8_t*>(k_zero),
                           reinterpret_cast<uint8_t*>(pos)};
  AkvCopyKeyRuns(KeyRuns(layer, first, n), dst);
}

void AkvColdTier::Append(int layer, const AkvColdRows& in) {
  const int64_t codes_row = int64_t(hkv_) * cc_, groups_row = int64_t(hkv_) * gn_ * 2;
  const uint8_t* src[6] = {in.k,
                           in.v,
                           reinterpret_cast<const uint8_t*>(in.k_scale),
                           reinterpret_cast<const uint8_t*>(in.k_zero),
                           reinterpret_cast<const uint8_t*>(in.v_scale),
                           reinterpret_cast<const uint8_t*>(in.v_zero)};
  for (int i = 0; i < in.rows; ++i) {
    const int64_t r = rows_[layer];
    const int64_t block = r / kAkvColdBlockRows, off = r % kAkvColdBlockRows;
    if (block == static_cast<int64_t>(blocks_[layer].size())) {
      blocks_[layer].emplace_back(new uint8_t[row_bytes_ * kAkvColdBlockRows]);
    }
    for (int a = 0; a < 6; ++a) {
      const int64_t w = a < 2 ? codes_row : groups_row;
      std::memcpy(Array(layer, block, a) + off * w, src[a] + i * w, static_cast<size_t>(w));
    }
    std::memcpy(Array(layer, block, 6) + off * 4, in.pos + i, 4);
    rows_[layer] = r + 1;
  }
}

int64_t AkvColdTier::TotalRows() const {
  int64_t n = 0;
  for (int64_t r : rows_) n += r;
  return n;
}

int64_t AkvColdTier::Bytes() const {
  int64_t blocks = 0;
  for (const auto& l : blocks_) blocks += static_cast<int64_t>(l.size());
  return blocks * kAkvColdBlockRows * row_bytes_;
}

int32_t AkvColdTier::Pos(int layer, int64_t i) const {
  int32_t p;
  std::memcpy(&p, Array(layer, i / kAkvColdBlockRows, 6) + (i % kAkvColdBlockRows) * 4, 4);
  return p;
}

AkvColdRows AkvColdScratch::View(int n) const {
  AkvColdRows r;
  r.k = k.data();
  r.v = v.data();
  r.k_scale = k_scale.data();
  r.k_zero = k_zero.data();
  r.v_scale = v_scale.data();
  r.v_zero = v_zero.data();
  r.pos = pos.data();
  r.rows = n;
  return r;
}

int AkvRequantizeRows(const AkvColdRows& in, const AkvLayout& lay, int in_bits, int out_bits, AkvColdScratch* out) {
  const int Hkv = lay.num_kv_heads, D = lay.head_dim, g = lay.group_size, Gn = lay.Groups(), n = in.rows;
  const int in_cb = D * in_bits / 8, out_cb = D * out_bits / 8;
  out->k.resize(size_t(n) * Hkv * out_cb);
  out->v.resize(size_t(n) * Hkv * out_cb);
  for (auto* a : {&out->k_scale, &out->k_zero, &out->v_scale, &out->v_zero}) a->resize(size_t(n) * Hkv * Gn);
  out->pos.assign(in.pos, in.pos + n);
  std::vector<float> row(static_cast<size_t>(D));
  int sat = 0;
  for (int64_t r = 0; r < int64_t(n) * Hkv; ++r) {
    AkvDequantRowHost(in.k + r * in_cb, in.k_scale + r * Gn, in.k_zero + r * Gn, D, in_bits, g, row.data());
    sat += AkvQuantizeRowHost(row.data(), D, out_bits, g, out->k.data() + r * out_cb, out->k_scale.data() + r * Gn,
                              out->k_zero.data() + r * Gn);
    AkvDequantRowHost(in.v + r * in_cb, in.v_scale + r * Gn, in.v_zero + r * Gn, D, in_bits, g, row.data());
    sat += AkvQuantizeRowHost(row.data(), D, out_bits, g, out->v.data() + r * out_cb, out->v_scale.data() + r * Gn,
                              out->v_zero.data() + r * Gn);
  }
  return sat;
}

int AkvRequantizeStageRows(const AkvLayout& w, const AkvColdStage& s, int layer, int n, int cold_bits,
                           AkvColdScratch* out) {
  const int64_t base = int64_t(layer) * s.Rows(w), codes = base * w.num_kv_heads * w.CodeBytes();
  const int64_t groups = base * w.num_kv_heads * w.Groups();
  AkvColdRows in;
  in.k = s.k + codes, in.v = s.v + codes;
  in.k_scale = s.k_scale + groups, in.k_zero = s.k_zero + groups;
  in.v_scale = s.v_scale + groups, in.v_zero = s.v_zero + groups;
  in.pos = s.pos + base;
  in.rows = n;
  return AkvRequantizeRows(in, w, w.warm_bits, cold_bits, out);
}

}  // namespace kvstream
