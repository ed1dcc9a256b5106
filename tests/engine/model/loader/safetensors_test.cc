// safetensors container parsing: the committed fixture, every truncation of
// its header, and corrupted headers built in the test.
#include "engine/model/loader/safetensors_reader.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/model/loader/safetensors_test_util.h"
#include "tests/test_paths.h"

namespace kvstream::loader {
namespace {

using ::kvstream::testing::Bytes;
using ::kvstream::testing::MakeSafetensors;
using ::kvstream::testing::ReadFileBytes;
using ::testing::HasSubstr;
using nlohmann::json;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }
std::string FixtureFile() {
  return ::kvstream::testing::FixtureDir() + "/hf_tiny/model.safetensors";
}

// Two F32 tensors "a" [2] and "b" [1, 2] tiling 16 bytes.
json TwoTensorHeader() {
  return {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
          {"b", {{"dtype", "F32"}, {"shape", {1, 2}}, {"data_offsets", {8, 16}}}}};
}
absl::Status ParseHeader(const json& h, size_t data_bytes = 16) {
  return ParseSafetensors(MakeSafetensors(h, Bytes(data_bytes, 0))).status();
}

TEST(Safetensors, ParsesFixtureHeaderAndTilesBuffer) {
  const Bytes bytes = ReadFileBytes(FixtureFile());
  auto f = ParseSafetensors(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->tensors.size(), 21u);  // 2 x 9 layer tensors + embed + norm + lm_head
  uint64_t end = 0;
  for (const SafetensorsEntry& e : f->tensors) {
    EXPECT_EQ(e.begin, end) << e.name;
    end = e.end;
  }
  EXPECT_EQ(f->data_offset + end, bytes.size());
}

TEST(Safetensors, ReadsF32F16AndBf16) {
  Bytes data;
  testing::Put<float>(data, 1.5f);
  testing::Put<uint16_t>(data, 0x3C00);  // F16 1.0
  testing::Put<uint16_t>(data, 0xC000);  // BF16 -2.0
  json h = {{"x", {{"dtype", "F32"}, {"shape", json::array()}, {"data_offsets", {0, 4}}}},
            {"y", {{"dtype", "F16"}, {"shape", {1}}, {"data_offsets", {4, 6}}}},
            {"z", {{"dtype", "BF16"}, {"shape", {1, 1}}, {"data_offsets", {6, 8}}}},
            {"__metadata__", {{"format", "pt"}}}};
  const Bytes file = MakeSafetensors(h, data);
  auto f = ParseSafetensors(file);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(f->tensors.size(), 3u);
  const float want[] = {1.5f, 1.0f, -2.0f};
  for (int i = 0; i < 3; ++i) {
    auto t = ReadSafetensor(*f, f->tensors[i]);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_EQ(t->data.size(), 1u);
    EXPECT_EQ(t->data[0], want[i]) << f->tensors[i].name;
  }
}

TEST(Safetensors, RejectsEveryTruncatedPrefix) {
  const Bytes bytes = ReadFileBytes(FixtureFile());
  auto full = ParseSafetensors(bytes);
  ASSERT_TRUE(full.ok());
  // Every prefix through the header and the first bytes of data, then one
  // in every 1009 (the data is plain numbers: a cut there is a cut anywhere).
  for (size_t n = 0; n < bytes.size(); n += n < full->data_offset + 64 ? 1 : 1009) {
    const Bytes prefix(bytes.begin(), bytes.begin() + n);
    EXPECT_FALSE(ParseSafetensors(prefix).ok()) << "prefix of " << n << " bytes parsed";
  }
  const Bytes last(bytes.begin(), bytes.end() - 1);
  EXPECT_FALSE(ParseSafetensors(last).ok());
}

TEST(Safetensors, RejectsHeaderLengthBeyondFileOrCap) {
  Bytes b = MakeSafetensors(TwoTensorHeader(), Bytes(16, 0));
  b[0] = 0xFF;
  b[1] = 0xFF;  // 65535 + ... bytes of header in a ~150-byte file
  EXPECT_THAT(Msg(ParseSafetensors(b).status()), HasSubstr("JSON header: need"));
  for (int i = 0; i < 8; ++i) b[i] = 0xFF;
  EXPECT_THAT(Msg(ParseSafetensors(b).status()), HasSubstr("exceeds the cap"));
}

TEST(Safetensors, RejectsInvalidOrNonObjectJson) {
  Bytes b;
  testing::Put<uint64_t>(b, 5);
  for (char c : std::string("{\"a\":")) b.push_back(static_cast<uint8_t>(c));
  EXPECT_THAT(Msg(ParseSafetensors(b).status()), HasSubstr("header: not valid JSON"));
  EXPECT_THAT(Msg(ParseHeader(json::array({1, 2}), 0)), HasSubstr("not a JSON object"));
  EXPECT_THAT(Msg(ParseHeader({{"a", 3}}, 0)), HasSubstr("tensor 'a': entry is not a JSON"));
  EXPECT_THAT(Msg(ParseHeader({{"__metadata__", 3}}, 0)), HasSubstr("__metadata__"));
}

TEST(Safetensors, RejectsUnknownAndUnsupportedDtypes) {
  json h = TwoTensorHeader();
  h["a"]["dtype"] = "F17";
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("tensor 'a': dtype 'F17' is not a safetensors"));
  h["a"]["dtype"] = "I32";
  h["a"]["data_offsets"] = {0, 8};
  auto s = ParseHeader(h);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(s), HasSubstr("dtype I32 is not supported"));
  h = TwoTensorHeader();
  h["a"].erase("dtype");
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("missing string \"dtype\""));
}

TEST(Safetensors, RejectsBadShapes) {
  json h = TwoTensorHeader();
  h["a"]["shape"] = {-2};
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("tensor 'a': an extent is a number"));
  h["a"]["shape"] = {2.0};
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("an extent is a number"));
  h["a"]["shape"] = {"2"};
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("an extent is a string"));
  h["a"]["shape"] = 2;
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("\"shape\" must be an array"));
  h["a"]["shape"] = {1ULL << 30, 1ULL << 30};
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("element count exceeds the cap"));
}

TEST(Safetensors, RejectsOffsetsThatDisagreeWithShapeOrOrder) {
  json h = TwoTensorHeader();
  h["a"]["data_offsets"] = {0, 12};
  EXPECT_THAT(Msg(ParseHeader(h)),
              HasSubstr("tensor 'a': data_offsets span 12 bytes, expected 8 (2 F32 elements)"));
  h["a"]["data_offsets"] = {8, 0};
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("0 <= begin <= end"));
  h["a"]["data_offsets"] = {0};
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("data_offsets"));
  h["a"]["data_offsets"] = {-8, 0};
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("data_offsets"));
}

TEST(Safetensors, RejectsOverlapHoleAndTrailingBytes) {
  json h = TwoTensorHeader();
  h["b"]["data_offsets"] = {4, 12};  // overlaps a
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("tensor 'b': data starts at 4, expected 8"));
  EXPECT_THAT(Msg(ParseHeader(h)), HasSubstr("overlap"));
  h["b"]["data_offsets"] = {12, 20};  // leaves 8..12 unused
  EXPECT_THAT(Msg(ParseHeader(h, 20)), HasSubstr("hole"));
  EXPECT_THAT(Msg(ParseHeader(TwoTensorHeader(), 24)),
              HasSubstr("byte buffer: 24 bytes, but the tensors cover 16"));
}

TEST(Safetensors, RejectsDataPastEndOfFile) {
  auto s = ParseHeader(TwoTensorHeader(), 12);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(Msg(s), HasSubstr("tensor 'b': data ends at 16, past the 12-byte buffer"));
}

TEST(Safetensors, DuplicateNameLeavesAHoleAndIsRejected) {
  // nlohmann keeps the last "a"; the first one's bytes become a hole.
  const std::string text =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  Bytes b;
  testing::Put<uint64_t>(b, text.size());
  b.insert(b.end(), text.begin(), text.end());
  b.resize(b.size() + 16, 0);
  EXPECT_FALSE(ParseSafetensors(b).ok());
}

// Seeded byte flips in the JSON header of the fixture: each copy gives an
// error status or a valid parse whose entries can all be read, never a crash.
TEST(Safetensors, MutatedHeaderNeverCrashes) {
  const Bytes original = ReadFileBytes(FixtureFile());
  auto f0 = ParseSafetensors(original);
  ASSERT_TRUE(f0.ok());
  const uint64_t header_end = f0->data_offset;
  std::mt19937_64 rng(3);
  auto uniform = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi - 1)(rng);
  };
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = original;
    for (int k = 0, n = static_cast<int>(uniform(1, 4)); k < n; ++k) {
      b[uniform(0, header_end)] = static_cast<uint8_t>(uniform(0, 256));
    }
    auto f = ParseSafetensors(b);
    if (!f.ok()) continue;
    ++parsed;
    for (const SafetensorsEntry& e : f->tensors) EXPECT_TRUE(ReadSafetensor(*f, e).ok());
  }
  EXPECT_GT(parsed, 0);     // flips inside names or spaces keep the header valid
  EXPECT_LT(parsed, 3000);
}

}  // namespace
}  // namespace kvstream::loader
