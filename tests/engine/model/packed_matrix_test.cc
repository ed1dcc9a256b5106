// The packed (Q4_1 / Q8_0 block) matmul equals dequantize-then-multiply, on
// both the AVX2 and the portable path, for every input count the kernel tiles
// differently (1-2 fused, 3+ through scratch, remainders of 3-row and 4-input
// tiles); an output's bits do not depend on the other inputs in the batch or
// the thread split; and the loader's packed rows hold the same values as its
// fp32 rows (Q/K unpermutation included).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "engine/model/loader/ggml_types.h"
#include "engine/model/loader/weights.h"
#include "engine/model/packed_matrix.h"
#include "tests/test_paths.h"

namespace kvstream {
namespace {

using loader::GgmlType;

uint16_t RandomHalf(std::mt19937& rng, float lo, float hi) {
  // A float in [lo, hi) rounded to the nearest fp16 by truncating the
  // mantissa (good enough for test data; the exact value is what counts).
  float f = std::uniform_real_distribution<float>(lo, hi)(rng);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((bits >> 23) & 0xFF) - 127 + 15;
  if (exp <= 0) return static_cast<uint16_t>(sign);
  return static_cast<uint16_t>(sign | (exp << 10) | ((bits >> 13) & 0x3FFu));
}

std::vector<uint8_t> RandomBlocks(GgmlType type, int64_t rows, int64_t cols, std::mt19937& rng) {
  const int64_t nb = rows * cols / 32;
  const int64_t bb = type == GgmlType::kQ4_1 ? 20 : 34;
  std::vector<uint8_t> out(static_cast<size_t>(nb * bb));
  std::uniform_int_distribution<int> byte(0, 255);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* p = out.data() + b * bb;
    const uint16_t d = RandomHalf(rng, 0.001f, 0.05f);
    p[0] = d & 0xFF;
    p[1] = d >> 8;
    int64_t first_q = 2;
    if (type == GgmlType::kQ4_1) {
      const uint16_t m = RandomHalf(rng, -0.4f, 0.1f);
      p[2] = m & 0xFF;
      p[3] = m >> 8;
      first_q = 4;
    }
    for (int64_t j = first_q; j < bb; ++j) p[j] = static_cast<uint8_t>(byte(rng));
  }
  return out;
}

// y = x W^T in double from the loader's own dequantizer: the reference.
std::vector<double> Reference(GgmlType type, const std::vector<uint8_t>& blocks, int64_t rows, int64_t cols,
                              const std::vector<float>& x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  EXPECT_TRUE(loader::DequantizeToF32(type, blocks, w).ok());
  std::vector<double> y(static_cast<size_t>(n * rows));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c) acc += static_cast<double>(w[r * cols + c]) * x[i * cols + c];
      y[i * rows + r] = acc;
    }
  }
  return y;
}

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, const char* what) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << " left element " << i << " unwritten (NaN poison)";
    err = std::max(err, std::abs(got[i] - want[i]));
    norm = std::max(norm, std::abs(want[i]));
  }
  EXPECT_LE(err / norm, 2e-6) << what << ": max abs error " << err << " vs max |y| " << norm;
}

class PackedMatmulTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(PackedMatmulTest, EqualsDequantizedMatmulForEveryInputCount) {
  std::mt19937 rng(20261123 + static_cast<int>(GetParam()));
  // Row counts leave every remainder of the 3- and 4-row tiles; 288 cols
  // gives 9 blocks (Q4_1 minima padded from 9 to 16 columns).
  for (const auto [rows, cols] : {std::pair<int64_t, int64_t>{7, 32}, {131, 576}, {200, 1536}, {65, 288}}) {
    auto m = MakePackedMatrix(static_cast<uint32_t>(GetParam()), rows, cols, RandomBlocks(GetParam(), rows, cols, rng));
    ASSERT_TRUE(m.ok()) << m.status();
    const std::vector<uint8_t> blocks = m->blocks;
    for (int64_t n = 1; n <= 18; ++n) {
      std::vector<float> x(static_cast<size_t>(n * cols));
      std::normal_distribution<float> g(0.f, 1.f);
      for (float& v : x) v = g(rng);
      const std::vector<double> want = Reference(GetParam(), blocks, rows, cols, x, n);
      std::vector<float> fast(want.size(), std::numeric_limits<float>::quiet_NaN());
      std::vector<float> scalar(want.size(), std::numeric_limits<float>::quiet_NaN());
      PackedMatmul(*m, x.data(), n, fast.data());
      PackedMatmulScalar(*m, x.data(), n, scalar.data());
      SCOPED_TRACE(::testing::Message() << "rows=" << rows << " cols=" << cols << " n=" << n
                                      << " avx2=" << PackedMatmulHasAvx2());
      ExpectClose(fast, want, "PackedMatmul");
      ExpectClose(scalar, want, "PackedMatmulScalar");
    }
  }
}

// Batch invariance at the kernel: row i of an n-input product has the same
// bits as x_i alone, for every n and tile position, and under 1 or 2 threads.
TEST_P(PackedMatmulTest, OutputBitsDoNotDependOnTheBatch) {
  if (!PackedMatmulHasAvx2()) GTEST_SKIP() << "the portable path is per-row by construction";
  std::mt19937 rng(7 + static_cast<int>(GetParam()));
  const int64_t rows = 131, cols = 576, max_n = 20;
  auto m = MakePackedMatrix(static_cast<uint32_t>(GetParam()), rows, cols, RandomBlocks(GetParam(), rows, cols, rng));
  ASSERT_TRUE(m.ok()) << m.status();
  std::vector<float> x(static_cast<size_t>(max_n * cols));
  std::normal_distribution<float> g(0.f, 1.f);
  for (float& v : x) v = g(rng);
  std::vector<float> alone(static_cast<size_t>(max_n * rows));
  for (int64_t i = 0; i < max_n; ++i) PackedMatmul(*m, x.data() + i * cols, 1, alone.data() + i * rows);
  const int saved_threads = at::get_num_threads();
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    for (int64_t n = 1; n <= max_n; ++n) {
      // Start at different rows so each input lands in a different tile slot.
      for (int64_t first : {int64_t{0}, max_n - n}) {
        std::vector<float> y(static_cast<size_t>(n * rows), std::numeric_limits<float>::quiet_NaN());
        PackedMatmul(*m, x.data() + first * cols, n, y.data());
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(0, std::memcmp(y.data() + i * rows, alone.data() + (first + i) * rows, rows * sizeof(float)))
              << "input " << first + i << " differs from its 1-input product with n=" << n << " threads=" << threads;
        }
      }
    }
  }
  at::set_num_threads(saved_threads);
}

INSTANTIATE_TEST_SUITE_P(Types, PackedMatmulTest, ::testing::Values(GgmlType::kQ4_1, GgmlType::kQ8_0),
                         [](const auto& info) { return info.param == GgmlType::kQ4_1 ? "Q4_1" : "Q8_0"; });

TEST(PackedMatrix, RejectsWrongTypeShapeAndByteCount) {
  auto bad_type = MakePackedMatrix(static_cast<uint32_t>(GgmlType::kQ6_K), 1, 256, std::vector<uint8_t>(210));
  EXPECT_EQ(bad_type.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_cols = MakePackedMatrix(static_cast<uint32_t>(GgmlType::kQ8_0), 2, 33, std::vector<uint8_t>(68));
  EXPECT_NE(bad_cols.status().message().find("multiple of 32"), std::string::npos) << bad_cols.status();
  auto bad_bytes = MakePackedMatrix(static_cast<uint32_t>(GgmlType::kQ4_1), 2, 64, std::vector<uint8_t>(79));
  EXPECT_NE(bad_bytes.status().message().find("79 bytes, expected 80"), std::string::npos) << bad_bytes.status();
}

TEST(PackedMatrix, LoaderPackedRowsHoldTheFp32Values) {
  const std::string path = testing::DefaultModelPath();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no model at " << path << " (run scripts/setup.sh)";
  auto w = LoadWeights(path);
  ASSERT_TRUE(w.ok()) << w.status();
  int checked = 0;
  for (const std::string name : {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                                 "model.layers.29.mlp.down_proj.weight", "model.embed_tokens.weight"}) {
    const HostTensor& t = w->tensors.at(name);
    ASSERT_FALSE(t.packed.empty()) << name << " (" << t.source_dtype << ") kept no blocks";
    std::vector<float> deq(t.data.size());
    ASSERT_TRUE(loader::DequantizeToF32(static_cast<GgmlType>(t.packed_type), t.packed, deq).ok());
    EXPECT_EQ(deq, t.data) << name;
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

}  // namespace
}  // namespace kvstream
