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
constexpr int kMaxRowsPerPass = 4;  // inputs sharing one read of a weight block (registers)
constexpr int64_t kRowTile = 16;    // weight rows revisited per input group while in L1

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
#define KV_AVX2 __attribute__((target("avx2,fma,f16c")))

KV_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

KV_AVX2 inline float F16(const uint8_t* p) { return _cvtsh_ss(Le16(p)); }

// The 32 weights of one block as four fp32 vectors (elements 0-7, ..., 24-31).
KV_AVX2 inline void LoadQ4_1(const uint8_t* blk, __m256 wv[4]) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 4));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(q, mask);                     // elements 0..15
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);  // elements 16..31
  wv[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  wv[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  wv[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  wv[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

KV_AVX2 inline void LoadQ8_0(const uint8_t* blk, __m256 wv[4]) {
  for (int k = 0; k < 4; ++k) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + 8 * k));
    wv[k] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
  }
}

// Rows [r0, r1) of W against NR inputs starting at x (stride cols).
template <int NR, bool kQ4_1>
KV_AVX2 void Avx2Rows(const PackedMatrix& w, const float* x, const float* xsum, int64_t r0, int64_t r1,
                      float* y) {
  const int64_t nb = w.cols / kBlock;
  const int64_t bb = kQ4_1 ? kQ4_1Bytes : kQ8_0Bytes;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w.blocks.data() + r * w.row_bytes;
    __m256 acc[NR];
    float macc[NR];
    for (int i = 0; i < NR; ++i) {
      acc[i] = _mm256_setzero_ps();
      macc[i] = 0.f;
    }
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * bb;
      __m256 wv[4];
      if constexpr (kQ4_1) {
        LoadQ4_1(blk, wv);
      } else {
        LoadQ8_0(blk, wv);
      }
      const __m256 d = _mm256_set1_ps(F16(blk));
      const float m = kQ4_1 ? F16(blk + 2) : 0.f;
      for (int i = 0; i < NR; ++i) {
        const float* xb = x + i * w.cols + b * kBlock;
        __m256 t = _mm256_mul_ps(wv[0], _mm256_loadu_ps(xb));
        t = _mm256_fmadd_ps(wv[1], _mm256_loadu_ps(xb + 8), t);
        t = _mm256_fmadd_ps(wv[2], _mm256_loadu_ps(xb + 16), t);
        t = _mm256_fmadd_ps(wv[3], _mm256_loadu_ps(xb + 24), t);
        acc[i] = _mm256_fmadd_ps(t, d, acc[i]);
        if constexpr (kQ4_1) macc[i] += m * xsum[i * nb + b];
      }
    }
    for (int i = 0; i < NR; ++i) y[i * w.rows + r] = HorizontalSum(acc[i]) + macc[i];
  }
}

template <int NR>
void Avx2RowsFor(const PackedMatrix& w, const float* x, const float* xsum, int64_t r0, int64_t r1,
                 float* y) {
  if (IsQ4_1(w)) {
    Avx2Rows<NR, true>(w, x, xsum, r0, r1, y);
  } else {
    Avx2Rows<NR, false>(w, x, xsum, r0, r1, y);
  }
}

void Avx2Range(const PackedMatrix& w, const float* x, const float* xsum, int64_t n, int64_t r0,
               int64_t r1, float* y) {
  const int64_t nb = w.cols / kBlock;
  for (int64_t t0 = r0; t0 < r1; t0 += kRowTile) {
    const int64_t t1 = std::min(r1, t0 + kRowTile);
    for (int64_t i = 0; i < n; i += kMaxRowsPerPass) {
      const float* xi = x + i * w.cols;
      const float* si = xsum + i * nb;
      float* yi = y + i * w.rows;
      switch (std::min<int64_t>(kMaxRowsPerPass, n - i)) {
        case 1: Avx2RowsFor<1>(w, xi, si, t0, t1, yi); break;
        case 2: Avx2RowsFor<2>(w, xi, si, t0, t1, yi); break;
        case 3: Avx2RowsFor<3>(w, xi, si, t0, t1, yi); break;
        default: Avx2RowsFor<4>(w, xi, si, t0, t1, yi); break;
      }
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
  const std::vector<float> xsum = BlockSums(x, n, w.cols);
  const bool avx2 = PackedMatmulHasAvx2();
  // ~64 rows a task: small enough to balance 2-16 threads over a 576-row
  // matrix, large enough that a task outlasts its scheduling.
  at::parallel_for(0, w.rows, 64, [&](int64_t r0, int64_t r1) {
    if (avx2) {
      Avx2Range(w, x, xsum.data(), n, r0, r1, y);
    } else {
      ScalarRows(w, x, xsum.data(), n, r0, r1, y);
    }
  });
}

}  // namespace kvstream
