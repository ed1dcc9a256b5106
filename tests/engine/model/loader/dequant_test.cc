// Dequantization against gguf-py: every dtype of the fixture must give the
// very fp32 bits gguf.quants.dequantize gives (bound: bit-exact; NaN only
// has to stay NaN, the fixture holds none).
#include <cmath>
#include <fstream>

#include "engine/model/loader/ggml_types.h"
#include "engine/model/loader/gguf_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/model/loader/gguf_test_builder.h"
#include "tests/test_paths.h"

namespace kvstream::loader {
namespace {

using ::kvstream::testing::BitsOf;
using ::kvstream::testing::Bytes;
using ::kvstream::testing::ReadFileBytes;
using ::testing::HasSubstr;

struct Fixture {
  Bytes bytes;
  GgufFile file;
  nlohmann::json expected;
};

const Fixture& GetFixture() {
  static const Fixture* f = [] {
    auto* fx = new Fixture;
    const std::string dir = ::kvstream::testing::FixtureDir() + "/gguf/";
    fx->bytes = ReadFileBytes(dir + "all_types.gguf");
    auto parsed = ParseGguf(fx->bytes);
    if (parsed.ok()) fx->file = *std::move(parsed);
    std::ifstream in(dir + "all_types_expected.json");
    fx->expected = nlohmann::json::parse(in)["tensors"];
    return fx;
  }();
  return *f;
}

// Dequantizes fixture tensor `name` and compares every element's bits.
void ExpectMatchesGgufPy(const std::string& name, const std::string& dtype) {
  const Fixture& fx = GetFixture();
  const GgufTensorInfo* t = fx.file.FindTensor(name);
  ASSERT_NE(t, nullptr) << name;
  EXPECT_EQ(FindGgmlType(static_cast<uint32_t>(t->type))->name, dtype);
  std::vector<float> out(static_cast<size_t>(t->n_elements), std::nanf(""));  // poisoned
  ASSERT_TRUE(DequantizeToF32(t->type, fx.file.TensorBytes(*t), out).ok());
  const auto want = fx.expected[name]["bits"].get<std::vector<uint32_t>>();
  ASSERT_EQ(out.size(), want.size());
  int mismatches = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (BitsOf(out[i]) != want[i] && mismatches++ < 5) {
      ADD_FAILURE() << name << "[" << i << "]: got 0x" << std::hex << BitsOf(out[i])
                    << ", gguf-py 0x" << want[i];
    }
  }
  EXPECT_EQ(mismatches, 0) << name;
}

TEST(Dequant, FixtureParses) { ASSERT_EQ(GetFixture().file.tensors.size(), 8u); }
TEST(Dequant, DequantMatchesGgufPyF32) { ExpectMatchesGgufPy("t.f32", "F32"); }
TEST(Dequant, DequantMatchesGgufPyF16) { ExpectMatchesGgufPy("t.f16", "F16"); }
TEST(Dequant, DequantMatchesGgufPyBF16) { ExpectMatchesGgufPy("t.bf16", "BF16"); }
TEST(Dequant, DequantMatchesGgufPyQ8_0) { ExpectMatchesGgufPy("t.q8_0", "Q8_0"); }
TEST(Dequant, DequantMatchesGgufPyQ4_0) { ExpectMatchesGgufPy("t.q4_0", "Q4_0"); }
TEST(Dequant, DequantMatchesGgufPyQ4_1) { ExpectMatchesGgufPy("t.q4_1", "Q4_1"); }
TEST(Dequant, DequantMatchesGgufPyQ4K) { ExpectMatchesGgufPy("t.q4_k", "Q4_K"); }
TEST(Dequant, DequantMatchesGgufPyQ6K) { ExpectMatchesGgufPy("t.q6_k", "Q6_K"); }

// Every one of the 65536 half bit patterns against an independent formula:
// value = (-1)^s * 2^(e-15) * (1 + m/1024), subnormal 2^-14 * m/1024.
TEST(Dequant, HalfToFloatExactForAllHalves) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    const float got = HalfToFloat(static_cast<uint16_t>(h));
    if (e == 31) {
      if (m == 0) {
        EXPECT_TRUE(std::isinf(got) && std::signbit(got) == (s == 1)) << h;
      } else {
        EXPECT_TRUE(std::isnan(got)) << h;
      }
      continue;
    }
    const double mag = e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1 + m / 1024.0, e - 15);
    const float want = static_cast<float>(s ? -mag : mag);  // exact: fp32 holds every half
    ASSERT_EQ(BitsOf(got), BitsOf(want)) << "half 0x" << std::hex << h;
  }
}

TEST(Dequant, Bf16IsTopHalfOfFloat) {
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(BitsOf(Bf16ToFloat(0x8000)), 0x80000000u);
  EXPECT_EQ(BitsOf(Bf16ToFloat(0x7F81)), 0x7F810000u);  // NaN payload kept
}

TEST(Dequant, RejectsSizeMismatch) {
  std::vector<uint8_t> src(34);  // one Q8_0 block
  std::vector<float> dst(64);
  auto s = DequantizeToF32(GgmlType::kQ8_0, src, dst);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("64 elements need 68 bytes, got 34"));
  std::vector<float> odd(33);
  EXPECT_THAT(DequantizeToF32(GgmlType::kQ8_0, src, odd).message(),
              HasSubstr("not a multiple of the block size 32"));
}

TEST(Dequant, TypeWithoutDequantizerIsFailedPrecondition) {
  std::vector<uint8_t> src(22);  // one Q5_0 block
  std::vector<float> dst(32);
  auto s = DequantizeToF32(GgmlType::kQ5_0, src, dst);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("Q5_0 has no dequantizer"));
}

// Spot rows of ggml's type table (gguf-py GGML_QUANT_SIZES).
TEST(Dequant, TypeTableMatchesGgmlGeometry) {
  struct Row { uint32_t id; const char* name; int64_t block, size; };
  for (Row r : {Row{0, "F32", 1, 4}, Row{1, "F16", 1, 2}, Row{2, "Q4_0", 32, 18},
                Row{3, "Q4_1", 32, 20}, Row{8, "Q8_0", 32, 34}, Row{12, "Q4_K", 256, 144},
                Row{14, "Q6_K", 256, 210}, Row{30, "BF16", 1, 2}, Row{29, "IQ1_M", 256, 56},
                Row{41, "Q1_0", 128, 18}}) {
    const GgmlTypeTraits* t = FindGgmlType(r.id);
    ASSERT_NE(t, nullptr) << r.id;
    EXPECT_EQ(t->name, r.name);
    EXPECT_EQ(t->block_size, r.block) << r.name;
    EXPECT_EQ(t->type_size, r.size) << r.name;
  }
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 42u, 1000u}) {
    EXPECT_EQ(FindGgmlType(removed), nullptr) << removed;
  }
  int with_dequant = 0;
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    const GgmlTypeTraits* t = FindGgmlType(id);
    with_dequant += t != nullptr && t->dequant != nullptr;
  }
  EXPECT_EQ(with_dequant, 8);  // F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q6_K
}

}  // namespace
}  // namespace kvstream::loader
