// Linear-layer weights kept in their GGUF block format for CPU decode.
//
// Decoding one token reads every weight once, so a CPU decode step is bound
// by memory bandwidth: fp32 weights cost 4 bytes each, the file's Q4_1 blocks
// 0.625 and Q8_0 blocks 1.0625. The blocks hold exactly the values the fp32
// path dequantizes (x = d*q + m, resp. d*q), so this changes only the order
// of the additions, not the model: the parity test runs through it.
//
// y[i, r] = sum_c W[r, c] * x[i, c], computed as
//   Q4_1: sum_c (d_b q_c) x_c + sum_b m_b * sum(x_b)
//   Q8_0: sum_c (d_b q_c) x_c
// (d_b q_c is exact in fp32) with x kept in fp32: llama.cpp quantizes x to 8
// bits instead; we keep fp32 to stay within the parity bound of issue 3.
// The AVX2 path's summation order for one output does not depend on how many
// input rows come with it, so a sequence decodes the same bits alone or in a
// batch (packed_matrix.cc says how).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace kvstream {

struct PackedMatrix {
  uint32_t type = 0;           // loader::GgmlType id: Q4_1 (3) or Q8_0 (8)
  int64_t rows = 0;            // output features
  int64_t cols = 0;            // input features, a multiple of 32
  int64_t row_bytes = 0;       // cols / 32 * block bytes
  std::vector<uint8_t> blocks; // [rows, row_bytes], the file's block layout

  int64_t bytes() const { return static_cast<int64_t>(blocks.size()); }
};

// Checks type, shape and byte count; takes the blocks.
absl::StatusOr<PackedMatrix> MakePackedMatrix(uint32_t type, int64_t rows, int64_t cols,
                                              std::vector<uint8_t> blocks);

// Stacks matrices of the same type and cols along rows (q, k, v -> qkv).
// Returns an empty matrix (rows == 0) when they cannot be stacked.
PackedMatrix StackPackedRows(const std::vector<const PackedMatrix*>& parts);

// y [n, rows] = x [n, cols] W^T, row-major fp32. Rows of W are split over
// ATen's intra-op (OpenMP) pool; the split does not change any output's bits.
void PackedMatmul(const PackedMatrix& w, const float* x, int64_t n, float* y);

// The portable path, also the CPU twin the AVX2 path is tested against.
void PackedMatmulScalar(const PackedMatrix& w, const float* x, int64_t n, float* y);

// True when this CPU runs the AVX2 + FMA + F16C path.
bool PackedMatmulHasAvx2();

}  // namespace kvstream
