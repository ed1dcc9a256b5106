// GGUF container parsing: the gguf-py written fixture read back exactly, and
// malformed files rejected with a status that names the problem.
#include "engine/model/loader/gguf_reader.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/model/loader/gguf_test_builder.h"
#include "tests/test_paths.h"

namespace kvstream::loader {
namespace {

using ::kvstream::testing::Bytes;
using ::kvstream::testing::BuildGguf;
using ::kvstream::testing::GgufSpec;
using ::kvstream::testing::ReadFileBytes;
using ::testing::HasSubstr;
namespace val = ::kvstream::testing::val;
using nlohmann::json;

std::string FixturePath(const std::string& name) {
  return ::kvstream::testing::FixtureDir() + "/gguf/" + name;
}

// The message as std::string, so gmock prints it as text.
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

json LoadJson(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

// Compares one parsed value with its expectation {"type", "value",
// "elem_type"} written by tests/oracle/gguf_make_fixtures.py.
void ExpectValue(const GgufValue& v, const json& e, const std::string& key) {
  SCOPED_TRACE(key);
  ASSERT_EQ(std::string(GgufTypeName(v.type)), e["type"].get<std::string>());
  const json& x = e["value"];
  switch (v.type) {
    case GgufType::kU8: case GgufType::kU16: case GgufType::kU32: case GgufType::kU64:
      EXPECT_EQ(v.u, x.get<uint64_t>());
      break;
    case GgufType::kBool:
      EXPECT_EQ(v.u, x.get<bool>() ? 1u : 0u);
      break;
    case GgufType::kI8: case GgufType::kI16: case GgufType::kI32: case GgufType::kI64:
      EXPECT_EQ(v.i, x.get<int64_t>());
      break;
    case GgufType::kF32: case GgufType::kF64:
      EXPECT_EQ(v.f, x.get<double>());  // exact: f32 widens to double exactly
      break;
    case GgufType::kString:
      EXPECT_EQ(v.str, x.get<std::string>());
      break;
    case GgufType::kArray: {
      const std::string et = e["elem_type"].get<std::string>();
      ASSERT_EQ(std::string(GgufTypeName(v.elem_type)), et);
      ASSERT_EQ(v.ArraySize(), x.size());
      for (size_t k = 0; k < x.size(); ++k) {
        if (et == "array") {
          ExpectValue(v.arr[k], x[k], key + "[" + std::to_string(k) + "]");
        } else if (et == "string") {
          EXPECT_EQ(v.arr_str[k], x[k].get<std::string>());
        } else if (et == "f32" || et == "f64") {
          EXPECT_EQ(v.arr_f[k], x[k].get<double>());
        } else if (et == "bool") {
          EXPECT_EQ(v.arr_u[k], x[k].get<bool>() ? 1u : 0u);
        } else if (et[0] == 'i') {
          EXPECT_EQ(v.arr_i[k], x[k].get<int64_t>());
        } else {
          EXPECT_EQ(v.arr_u[k], x[k].get<uint64_t>());
        }
      }
      break;
    }
    default:
      FAIL() << "unexpected type";
  }
}

TEST(GgufReader, ReadsEveryMetadataValueTypeOfFixture) {
  const Bytes bytes = ReadFileBytes(FixturePath("all_types.gguf"));
  const json expected = LoadJson(FixturePath("all_types_expected.json"))["metadata"];
  auto f = ParseGguf(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->version, 3u);
  EXPECT_EQ(f->alignment, 64u);
  ASSERT_EQ(f->kv.size(), expected.size());
  for (const auto& [key, v] : f->kv) {
    ASSERT_TRUE(expected.contains(key)) << key;
    ExpectValue(v, expected[key], key);
  }
}

TEST(GgufReader, ReadsTensorTableOfFixtureInGgmlOrder) {
  const Bytes bytes = ReadFileBytes(FixturePath("all_types.gguf"));
  const json expected = LoadJson(FixturePath("all_types_expected.json"))["tensors"];
  auto f = ParseGguf(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors.size(), expected.size());
  EXPECT_EQ(f->data_offset % 64, 0u);
  for (const GgufTensorInfo& t : f->tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_TRUE(expected.contains(t.name));
    std::vector<int64_t> shape = expected[t.name]["shape"].get<std::vector<int64_t>>();
    std::vector<int64_t> ne(shape.rbegin(), shape.rend());  // numpy order is outermost first
    EXPECT_EQ(t.ne, ne);
    EXPECT_EQ(FindGgmlType(static_cast<uint32_t>(t.type))->name,
              expected[t.name]["dtype"].get<std::string>());
    EXPECT_EQ(t.offset % 64, 0u);
    EXPECT_LE(f->data_offset + t.offset + t.n_bytes, bytes.size());
  }
}

TEST(GgufReader, AcceptsVersion2Header) {
  Bytes bytes = ReadFileBytes(FixturePath("all_types.gguf"));
  bytes[4] = 2;  // v2 and v3 share the little-endian layout
  auto f = ParseGguf(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->version, 2u);
  EXPECT_EQ(f->tensors.size(), 8u);
}

TEST(GgufReader, RejectsVersion1AndUnknownVersions) {
  Bytes bytes = ReadFileBytes(FixturePath("all_types.gguf"));
  bytes[4] = 1;
  EXPECT_THAT(Msg(ParseGguf(bytes).status()), HasSubstr("version 1"));
  bytes[4] = 4;
  EXPECT_THAT(Msg(ParseGguf(bytes).status()), HasSubstr("version 4, expected 2 or 3"));
  bytes[4] = 0;
  bytes[7] = 3;  // what a big-endian v3 file looks like
  EXPECT_THAT(Msg(ParseGguf(bytes).status()), HasSubstr("big-endian"));
}

TEST(GgufReader, RejectsBadMagic) {
  Bytes bytes = ReadFileBytes(FixturePath("all_types.gguf"));
  bytes[0] = 'X';
  EXPECT_THAT(Msg(ParseGguf(bytes).status()), HasSubstr("magic"));
}

TEST(GgufReader, RejectsEveryTruncatedPrefix) {
  const Bytes bytes = ReadFileBytes(FixturePath("all_types.gguf"));
  ASSERT_TRUE(ParseGguf(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    // A fresh allocation of exactly n bytes, so ASan sees any overread.
    const Bytes prefix(bytes.begin(), bytes.begin() + n);
    EXPECT_FALSE(ParseGguf(prefix).ok()) << "prefix of " << n << " bytes parsed";
  }
}

// ---- corrupted fields, built byte by byte ----------------------------------

GgufSpec OneTensorSpec() {
  GgufSpec s;
  s.Kv("general.architecture", val::Str("llama"));
  s.F32Tensor("a", {4, 2}, std::vector<float>(8, 1.0f));
  s.F32Tensor("b", {8}, std::vector<float>(8, 2.0f));
  return s;
}

absl::Status Parse(const GgufSpec& s) { return ParseGguf(BuildGguf(s)).status(); }

TEST(GgufReader, ParsesBuilderBaseline) {
  auto f = ParseGguf(BuildGguf(OneTensorSpec()));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tensors[1].offset, 32u);
}

TEST(GgufReader, RejectsCountsAboveCapOrBeyondFile) {
  GgufSpec s = OneTensorSpec();
  s.tensor_count = uint64_t{1} << 40;
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor_count: 1099511627776 exceeds the cap"));
  s = OneTensorSpec();
  s.kv_count = 60000;  // under the cap, but 60000 pairs cannot fit
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("kv_count 60000 needs at least"));
  s = OneTensorSpec();
  s.tensor_count = 5000;
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor_count 5000 needs at least"));
}

TEST(GgufReader, RejectsArrayAndStringLengthsBeyondFile) {
  GgufSpec s = OneTensorSpec();
  Bytes arr;
  testing::Put<uint32_t>(arr, 9);
  testing::Put<uint32_t>(arr, 4);                 // u32 elements
  testing::Put<uint64_t>(arr, uint64_t{1} << 20);  // a million, in a tiny file
  s.Kv("x.arr", arr);
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'x.arr': array of 1048576 u32"));
  s = OneTensorSpec();
  testing::Put<uint32_t>(arr = {}, 9);
  testing::Put<uint32_t>(arr, 0);
  testing::Put<uint64_t>(arr, uint64_t{1} << 30);
  s.Kv("x.big", arr);
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("exceeds the cap"));
  s = OneTensorSpec();
  Bytes str;
  testing::Put<uint32_t>(str, 8);
  testing::Put<uint64_t>(str, 1000);
  s.Kv("x.str", str);
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'x.str': string length 1000 exceeds"));
}

TEST(GgufReader, RejectsUnknownValueTypes) {
  GgufSpec s = OneTensorSpec();
  Bytes bad;
  testing::Put<uint32_t>(bad, 13);
  s.Kv("x.type", bad);
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'x.type': value type 13 is not a GGUF type"));
  s = OneTensorSpec();
  testing::Put<uint32_t>(bad = {}, 9);
  testing::Put<uint32_t>(bad, 77);
  testing::Put<uint64_t>(bad, 1);
  s.Kv("x.elem", bad);
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'x.elem': value type 77"));
}

TEST(GgufReader, RejectsBoolByteOtherThanZeroOrOne) {
  GgufSpec s = OneTensorSpec();
  Bytes b;
  testing::Put<uint32_t>(b, 7);
  testing::Put<uint8_t>(b, 2);
  s.Kv("x.flag", b);
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'x.flag': bool byte is 2"));
}

TEST(GgufReader, RejectsArraysNestedBeyondCap) {
  GgufSpec s = OneTensorSpec();
  Bytes b;
  for (int d = 0; d < 6; ++d) {  // six levels of one-element arrays
    if (d == 0) testing::Put<uint32_t>(b, 9);
    testing::Put<uint32_t>(b, 9);
    testing::Put<uint64_t>(b, 1);
  }
  s.Kv("x.deep", b);
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'x.deep': arrays nested 5 deep"));
}

TEST(GgufReader, RejectsArraysBeyondFileWideBudgets) {
  const Bytes bytes = ReadFileBytes(FixturePath("all_types.gguf"));
  GgufLimits limits;
  limits.max_nested_arrays = 6;  // the fixture holds 3 + 2 + 2 + 3 = 10 inner arrays
  EXPECT_THAT(Msg(ParseGguf(bytes, limits).status()),
              HasSubstr("nested arrays exceed the file-wide cap 6"));
  limits.max_nested_arrays = 10;
  EXPECT_TRUE(ParseGguf(bytes, limits).ok());
  limits.max_total_array_elements = 20;  // the flat arrays alone hold 29 elements
  EXPECT_THAT(Msg(ParseGguf(bytes, limits).status()),
              HasSubstr("more array elements exceed the file-wide cap 20"));
}

TEST(GgufReader, RejectsDuplicateKeyAndEmptyKey) {
  GgufSpec s = OneTensorSpec();
  s.Kv("general.architecture", val::Str("qwen2"));
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'general.architecture': duplicate key"));
  s = OneTensorSpec();
  s.Kv("", val::U32(1));
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("empty key"));
}

TEST(GgufReader, RejectsDuplicateTensorName) {
  GgufSpec s = OneTensorSpec();
  s.tensors[1].name = "a";
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'a': duplicate tensor name"));
}

TEST(GgufReader, RejectsBadDimsAndExtents) {
  GgufSpec s = OneTensorSpec();
  s.tensors[0].ne = {1, 1, 1, 4, 2};
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'a': n_dims 5, expected 1..4"));
  s = OneTensorSpec();
  s.tensors[0].ne = {};
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'a': n_dims 0"));
  s = OneTensorSpec();
  s.tensors[0].ne = {4, 0};
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'a': ne[1] = 0, expected 1.."));
  s = OneTensorSpec();
  s.tensors[0].ne = {uint64_t{1} << 30, uint64_t{1} << 30};  // 2^60 elements
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'a': element count overflows"));
  s = OneTensorSpec();
  s.tensors[0].ne = {~uint64_t{0}, 1};
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("ne[0] = 18446744073709551615"));
}

TEST(GgufReader, RejectsUnknownOrRemovedGgmlType) {
  GgufSpec s = OneTensorSpec();
  s.tensors[0].type = 4;  // Q4_2, removed from ggml
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'a': ggml type 4 is not a known type"));
  s.tensors[0].type = 1000;
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("ggml type 1000"));
}

TEST(GgufReader, RejectsRowLengthNotMultipleOfBlock) {
  GgufSpec s = OneTensorSpec();
  s.tensors[0].type = 2;  // Q4_0: 32-element blocks
  s.tensors[0].ne = {48, 1};
  EXPECT_THAT(Msg(Parse(s)),
              HasSubstr("tensor 'a': row length ne[0] = 48 is not a multiple of the Q4_0 block "
                        "size 32"));
}

TEST(GgufReader, RejectsOffsetsOffTheAlignedRunningSum) {
  GgufSpec s = OneTensorSpec();
  s.tensors[1].offset = 0;  // overlaps tensor a
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'b': data offset 0, expected 32"));
  s.tensors[1].offset = 36;  // inside the data, but misaligned
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("data offset 36, expected 32"));
  s.tensors[1].offset = uint64_t{1} << 62;
  EXPECT_FALSE(Parse(s).ok());
}

TEST(GgufReader, RejectsTensorDataPastEndOfFile) {
  GgufSpec s = OneTensorSpec();
  s.tensors[1].ne = {8, 1000};  // declares 32000 bytes, the file holds 32
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor 'b': 32000 bytes at data offset 32 run past"));
  s = OneTensorSpec();
  s.pad_tail = false;  // the last tensor's padding is missing
  s.tensors[1].data.resize(24);
  s.tensors[1].ne = {6};
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("data section is 56 bytes, expected 64"));
}

TEST(GgufReader, RejectsBadAlignment) {
  GgufSpec s = OneTensorSpec();
  s.Kv("general.alignment", val::U32(48));
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'general.alignment': 48 is not a power of two"));
  s = OneTensorSpec();
  s.Kv("general.alignment", val::U32(0));
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("0 is not a power of two"));
  s = OneTensorSpec();
  s.Kv("general.alignment", val::U64(64));
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("key 'general.alignment': type u64, expected u32"));
}

TEST(GgufReader, HonoursPowerOfTwoAlignment) {
  GgufSpec s = OneTensorSpec();
  s.alignment = 256;
  s.Kv("general.alignment", val::U32(256));
  auto f = ParseGguf(BuildGguf(s));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->data_offset % 256, 0u);
  EXPECT_EQ(f->tensors[1].offset, 256u);
}

TEST(GgufReader, RejectsEmptyOrOverlongTensorName) {
  GgufSpec s = OneTensorSpec();
  s.tensors[0].name = "";
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("tensor #0 name: length 0"));
  s.tensors[0].name = std::string(300, 'n');
  EXPECT_THAT(Msg(Parse(s)), HasSubstr("length 300, expected 1..256"));
}

TEST(GgufReader, OpenGgufPrefixesErrorsWithPathAndReportsMissingFile) {
  auto missing = OpenGguf("/nonexistent/x.gguf");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto ok = OpenGguf(FixturePath("all_types.gguf"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->gguf.tensors.size(), 8u);
}

}  // namespace
}  // namespace kvstream::loader
