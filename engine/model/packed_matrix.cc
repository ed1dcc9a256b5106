#include "engine/model/packed_matrix.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/model/loader/ggml_types.h"

namespace kvstream {
namespace {

using loader::GgmlType;
using loader::HalfToFloat;

constexpr int64_t kBlock = 32;
constexpr int64_t kQ4_1Bytes = 20;  // f16 d, f16 m, u8 qs[16]
constexpr int64_t kQ8_0Bytes = 34;  // f16 d, i8 qs[32]

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

bool IsQ4_1(const PackedMatrix& w) { return w.type == static_cast<uint32_t>(GgmlType::kQ4_1); }

int64_t BlockBytes(uint32_t type) {
  if (type == static_cast<uint32_t>(GgmlType::kQ4_1)) return kQ4_1Bytes;
  if (type == static_cast<uint32_t>(GgmlType::kQ8_0)) return kQ8_0Bytes;
  return 0;
}

// sum(x_b) per 32-column block: the Q4_1 minimum multiplies it.
std::vector<float> BlockSums(const float* x, int64_t n, int64_t cols) {
  const int64_t nb = cols / kBlock;
  std::vector<float> s(static_cast<size_t>(n * nb));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t b = 0; b < nb; ++b) {
      float acc = 0.f;
      for (int64_t j = 0; j < kBlock; ++j) acc += x[i * cols + b * kBlock + j];
      s[i * nb + b] = acc;
    }
  }
  return s;
}

// ---- portable path ----------------------------------------------------------
void ScalarRows(const PackedMatrix& w, const float* x, const float* xsum, int64_t n, int64_t r0,
                int64_t r1, float* y) {
  const int64_t nb = w.cols / kBlock;
  const bool q41 = IsQ4_1(w);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.blocks.data() + r * w.row_bytes;
    for (int64_t i = 0; i < n; ++i) {
      const float* xi = x + i * w.cols;
      float acc = 0.f;
      for (int64_t b = 0; b < nb; ++b) {
        const float* xb = xi + b * kBlock;
        float dot = 0.f;
        if (q41) {
          const uint8_t* blk = row + b * kQ4_1Bytes;
          for (int j = 0; j < kBlock / 2; ++j) {
            dot += static_cast<float>(blk[4 + j] & 0x0F) * xb[j];
            dot += static_cast<float>(blk[4 + j] >> 4) * xb[j + kBlock / 2];
          }
          acc += HalfToFloat(Le16(blk)) * dot + HalfToFloat(Le16(blk + 2)) * xsum[i * nb + b];
        } else {
          const uint8_t* blk = row + b * kQ8_0Bytes;
          for (int j = 0; j < kBlock; ++j) dot += static_cast<float>(static_cast<int8_t>(blk[2 + j])) * xb[j];
          acc += HalfToFloat(Le16(blk)) * dot;
        }
      }
      y[i * w.rows + r] = acc;
    }
  }
}

// ---- AVX2 path ----------------------------------------------------------------
// A register-blocked fp32 GEMM over weights decoded once per call. Each
// weight row is unpacked to fp32 (d * q, exact: an fp16 scale times a 4- or
// 8-bit integer fits fp32's 24-bit mantissa) into a per-thread scratch row,
// then a kMR x kNR tile of outputs reuses every loaded weight vector across
// kNR input rows and every input vector across kMR weight rows. The old
// per-input-row kernel re-decoded each block for every 4 inputs and ran one
// serial FMA chain per output; this keeps 12 independent chains in flight.
//
// Batch invariance: the arithmetic of one output element (r, i) is fixed.
// Eight lane accumulators take acc = fma(w'[c], x'[c], acc) over the extended
// row c = 0, 8, 16, ... in order, then one fixed horizontal sum. The extended
// row is the decoded weights followed, for Q4_1, by the block minima m_b
// against the block sums of x (the m_b * sum(x_b) term), zero-padded to a
// multiple of 8. Tiles only choose which elements run together, never the
// order inside one, so a request gets the same bits alone or among 16.
#define KV_AVX2 __attribute__((target("avx2,fma,f16c")))

constexpr int kMR = 3;  // weight rows per tile
constexpr int kNR = 4;  // input rows per tile: 12 accumulators + 3 weights + 1 input = 16 ymm

int64_t RoundUp8(int64_t v) { return (v + 7) / 8 * 8; }

// Length of the extended row: cols, plus the Q4_1 minima padded to 8.
int64_t ExtendedCols(const PackedMatrix& w) {
  return w.cols + (IsQ4_1(w) ? RoundUp8(w.cols / kBlock) : 0);
}

KV_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

KV_AVX2 inline float F16(const uint8_t* p) { return _cvtsh_ss(Le16(p)); }

// Weight row r as its extended fp32 row (ExtendedCols floats) at dst.
KV_AVX2 void DecodeRow(const PackedMatrix& w, int64_t r, float* dst) {
  const int64_t nb = w.cols / kBlock;
  const uint8_t* row = w.blocks.data() + r * w.row_bytes;
  if (IsQ4_1(w)) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * kQ4_1Bytes;
      const __m256 d = _mm256_set1_ps(F16(blk));
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4));
      const __m128i lo = _mm_and_si128(q, mask);                     // elements 0..15
      const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);  // elements 16..31
      float* o = dst + b * kBlock;
      _mm256_storeu_ps(o, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo))));
      _mm256_storeu_ps(o + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)))));
      _mm256_storeu_ps(o + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi))));
      _mm256_storeu_ps(o + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)))));
      dst[w.cols + b] = F16(blk + 2);
    }
    std::fill(dst + w.cols + nb, dst + ExtendedCols(w), 0.f);
  } else {
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * kQ8_0Bytes;
      const __m256 d = _mm256_set1_ps(F16(blk));
      for (int k = 0; k < 4; ++k) {
        const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * k));
        _mm256_storeu_ps(dst + b * kBlock + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
      }
    }
  }
}

// y[i * ldy + r] = w'_r . x'_i for an MR x NR tile over k extended columns.
template <int MR, int NR>
KV_AVX2 void Tile(const float* w, const float* x, int64_t k, float* y, int64_t ldy) {
  __m256 acc[MR][NR];
  for (int r = 0; r < MR; ++r) {
    for (int i = 0; i < NR; ++i) acc[r][i] = _mm256_setzero_ps();
  }
  for (int64_t c = 0; c < k; c += 8) {
    __m256 wv[MR];
    for (int r = 0; r < MR; ++r) wv[r] = _mm256_loadu_ps(w + r * k + c);
    for (int i = 0; i < NR; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * k + c);
      for (int r = 0; r < MR; ++r) acc[r][i] = _mm256_fmadd_ps(wv[r], xv, acc[r][i]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int i = 0; i < NR; ++i) y[i * ldy + r] = HorizontalSum(acc[r][i]);
  }
}

using TileFn = void (*)(const float*, const float*, int64_t, float*, int64_t);

template <int MR>
TileFn TileFor(int64_t nr) {
  switch (nr) {
    case 1: return Tile<MR, 1>;
    case 2: return Tile<MR, 2>;
    case 3: return Tile<MR, 3>;
    default: return Tile<MR, kNR>;
  }
}

TileFn TileFor(int64_t mr, int64_t nr) {
  switch (mr) {
    case 1: return TileFor<1>(nr);
    case 2: return TileFor<2>(nr);
    default: return TileFor<kMR>(nr);
  }
}

// The extended inputs: x_i, then (Q4_1) its block sums, zero-padded.
std::vector<float> ExtendedInputs(const PackedMatrix& w, const float* x, int64_t n) {
  const int64_t k = ExtendedCols(w), nb = w.cols / kBlock;
  std::vector<float> xe(static_cast<size_t>(n * k), 0.f);
  const std::vector<float> xsum = IsQ4_1(w) ? BlockSums(x, n, w.cols) : std::vector<float>();
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(xe.data() + i * k, x + i * w.cols, w.cols * sizeof(float));
    if (!xsum.empty()) std::memcpy(xe.data() + i * k + w.cols, xsum.data() + i * nb, nb * sizeof(float));
  }
  return xe;
}

// ---- few inputs: decode in registers ------------------------------------------
// With 1-2 input rows a decoded weight is used too few times to pay for a
// trip through scratch, so these tiles decode each 8-column slice in
// registers and interleave kFusedMR weight rows (independent FMA chains).
// Same bits as the scratch path: the slice is the same exact d * q, the
// minima columns the same values, the FMA order the same.
constexpr int kFusedMR = 4;
constexpr int64_t kFusedMaxInputs = 2;  // measured: 3 inputs run faster through scratch
constexpr int64_t kPrefetchBytes = 256;

// Elements 8s..8s+7 of a block's weights times d (what DecodeRow stores).
template <bool kQ4_1>
KV_AVX2 inline __m256 DecodeSlice(const uint8_t* blk, int s, __m256 d) {
  if constexpr (kQ4_1) {
    // Elements 0-15 are the low nibbles of bytes 0-15, 16-31 the high ones.
    const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 4 + 8 * (s & 1))));
    const __m256i v = s >= 2 ? _mm256_srli_epi32(q, 4) : _mm256_and_si256(q, _mm256_set1_epi32(0x0F));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(v));
  } else {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * s));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
  }
}

template <int MR, int NR, bool kQ4_1>
KV_AVX2 void FusedTile(const PackedMatrix& w, int64_t r, const float* xe, int64_t k, float* y, int64_t ldy) {
  const int64_t nb = w.cols / kBlock, bb = kQ4_1 ? kQ4_1Bytes : kQ8_0Bytes;
  const uint8_t* rows[MR];
  __m256 acc[MR][NR];
  for (int j = 0; j < MR; ++j) {
    rows[j] = w.blocks.data() + (r + j) * w.row_bytes;
    for (int i = 0; i < NR; ++i) acc[j][i] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m256 d[MR];
    for (int j = 0; j < MR; ++j) {
      // Interleaved rows defeat the hardware streamer on a matrix that does
      // not fit the cache (the lm_head at n = 1: ~3 ms with it, ~9 ms without).
      _mm_prefetch(reinterpret_cast<const char*>(rows[j] + b * bb) + kPrefetchBytes, _MM_HINT_T0);
      d[j] = _mm256_set1_ps(F16(rows[j] + b * bb));
    }
    for (int s = 0; s < 4; ++s) {
      __m256 wv[MR];
      for (int j = 0; j < MR; ++j) wv[j] = DecodeSlice<kQ4_1>(rows[j] + b * bb, s, d[j]);
      for (int i = 0; i < NR; ++i) {
        const __m256 xv = _mm256_loadu_ps(xe + i * k + b * kBlock + 8 * s);
        for (int j = 0; j < MR; ++j) acc[j][i] = _mm256_fmadd_ps(wv[j], xv, acc[j][i]);
      }
    }
  }
  if constexpr (kQ4_1) {
    for (int64_t c = w.cols; c < k; c += 8) {  // the minima columns, as DecodeRow lays them out
      __m256 mv[MR];
      for (int j = 0; j < MR; ++j) {
        alignas(32) float m[8];
        for (int t = 0; t < 8; ++t) {
          const int64_t b = c - w.cols + t;
          m[t] = b < nb ? F16(rows[j] + b * bb + 2) : 0.f;
        }
        mv[j] = _mm256_load_ps(m);
      }
      for (int i = 0; i < NR; ++i) {
        const __m256 xv = _mm256_loadu_ps(xe + i * k + c);
        for (int j = 0; j < MR; ++j) acc[j][i] = _mm256_fmadd_ps(mv[j], xv, acc[j][i]);
      }
    }
  }
  for (int j = 0; j < MR; ++j) {
    for (int i = 0; i < NR; ++i) y[i * ldy + j] = HorizontalSum(acc[j][i]);
  }
}

using FusedFn = void (*)(const PackedMatrix&, int64_t, const float*, int64_t, float*, int64_t);

template <int MR, bool kQ4_1>
FusedFn FusedFor(int64_t nr) {
  return nr == 1 ? FusedTile<MR, 1, kQ4_1> : FusedTile<MR, kFusedMaxInputs, kQ4_1>;
}

template <bool kQ4_1>
FusedFn FusedFor(int64_t mr, int64_t nr) {
  switch (mr) {
    case 1: return FusedFor<1, kQ4_1>(nr);
    case 2: return FusedFor<2, kQ4_1>(nr);
    case 3: return FusedFor<3, kQ4_1>(nr);
    default: return FusedFor<kFusedMR, kQ4_1>(nr);
  }
}

// Rows [r0, r1) of y. scratch holds kMR extended weight rows.
void Avx2Range(const PackedMatrix& w, const float* xe, int64_t n, int64_t r0, int64_t r1, float* y,
               float* scratch) {
  const int64_t k = ExtendedCols(w);
  if (n <= kFusedMaxInputs) {
    for (int64_t r = r0; r < r1; r += kFusedMR) {
      const int64_t mr = std::min<int64_t>(kFusedMR, r1 - r);
      (IsQ4_1(w) ? FusedFor<true>(mr, n) : FusedFor<false>(mr, n))(w, r, xe, k, y + r, w.rows);
    }
    return;
  }
  for (int64_t r = r0; r < r1; r += kMR) {
    const int64_t mr = std::min<int64_t>(kMR, r1 - r);
    for (int64_t j = 0; j < mr; ++j) DecodeRow(w, r + j, scratch + j * k);
    // The weights stream from DRAM (the model is larger than the cache) and
    // the tiles below touch none of them, so the hardware prefetcher stalls:
    // fetch the next rows now, while the tiles run.
    const uint8_t* next = w.blocks.data() + (r + mr) * w.row_bytes;
    const uint8_t* end = w.blocks.data() + std::min<int64_t>(r1, r + 2 * kMR) * w.row_bytes;
    for (const uint8_t* p = next; p < end; p += 64) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
    for (int64_t i = 0; i < n; i += kNR) {
      const int64_t nr = std::min<int64_t>(kNR, n - i);
      TileFor(mr, nr)(scratch, xe + i * k, k, y + i * w.rows + r, w.rows);
    }
  }
}

}  // namespace

absl::StatusOr<PackedMatrix> MakePackedMatrix(uint32_t type, int64_t rows, int64_t cols,
                                              std::vector<uint8_t> blocks) {
  const int64_t bb = BlockBytes(type);
  if (bb == 0) return absl::InvalidArgumentError(absl::StrFormat("packed matrix: ggml type %d is not Q4_1 or Q8_0", type));
  if (rows <= 0 || cols <= 0 || cols % kBlock != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("packed matrix: shape [%d, %d] needs cols a positive multiple of 32", rows, cols));
  }
  const int64_t row_bytes = cols / kBlock * bb;
  if (static_cast<int64_t>(blocks.size()) != rows * row_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat("packed matrix: %d bytes, expected %d for [%d, %d]",
                                                      blocks.size(), rows * row_bytes, rows, cols));
  }
  PackedMatrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  m.row_bytes = row_bytes;
  m.blocks = std::move(blocks);
  return m;
}

PackedMatrix StackPackedRows(const std::vector<const PackedMatrix*>& parts) {
  PackedMatrix out;
  if (parts.empty()) return out;
  for (const PackedMatrix* p : parts) {
    if (p == nullptr || p->rows == 0 || p->type != parts[0]->type || p->cols != parts[0]->cols) return {};
  }
  out.type = parts[0]->type;
  out.cols = parts[0]->cols;
  out.row_bytes = parts[0]->row_bytes;
  for (const PackedMatrix* p : parts) {
    out.rows += p->rows;
    out.blocks.insert(out.blocks.end(), p->blocks.begin(), p->blocks.end());
  }
  return out;
}

bool PackedMatmulHasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

void PackedMatmulScalar(const PackedMatrix& w, const float* x, int64_t n, float* y) {
  const std::vector<float> xsum = BlockSums(x, n, w.cols);
  ScalarRows(w, x, xsum.data(), n, 0, w.rows, y);
}

void PackedMatmul(const PackedMatrix& w, const float* x, int64_t n, float* y) {
  if (!PackedMatmulHasAvx2()) {
    const std::vector<float> xsum = BlockSums(x, n, w.cols);
    at::parallel_for(0, w.rows, 64, [&](int64_t r0, int64_t r1) { ScalarRows(w, x, xsum.data(), n, r0, r1, y); });
    return;
  }
  const std::vector<float> xe = ExtendedInputs(w, x, n);
  // Scratch made here, one slice per pool thread: allocating inside the
  // parallel region would give every OpenMP thread its own malloc arena.
  const int64_t slice = kMR * ExtendedCols(w);
  std::vector<float> scratch(static_cast<size_t>(at::get_num_threads() * slice));
  // ~64 rows a task: small enough to balance 2-16 threads over a 576-row
  // matrix, large enough that a task outlasts its scheduling.
  at::parallel_for(0, w.rows, 64, [&](int64_t r0, int64_t r1) {
    Avx2Range(w, xe.data(), n, r0, r1, y, scratch.data() + at::get_thread_num() * slice);
  });
}

}  // namespace kvstream
