// 200 seeded mutations of the real SmolLM2 GGUF file: each must give an
// error status or a valid load, never a crash. Meant to run under
// AddressSanitizer (build with -DKVSTREAM_SANITIZE=address); a fresh
// allocation per truncated copy lets ASan catch any read past the end.
//
// Cost control: every copy goes through parse + config + tensor plan +
// tokenizer (GgufToWeights with dequantize=false); only a few valid copies
// are fully dequantized, since 135M parameters per copy would dominate.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "engine/model/loader/gguf_weights.h"
#include "gtest/gtest.h"
#include "tests/engine/model/loader/gguf_test_builder.h"
#include "tests/test_paths.h"

namespace kvstream::loader {
namespace {

using ::kvstream::testing::Bytes;

constexpr int kMutations = 200;
constexpr int kFullLoads = 3;  // valid copies that are also dequantized

enum class Kind { kTruncateHeader, kTruncateData, kFlipHeader, kFlipTable, kSmashU64, kFlipData };

struct Outcome {
  int ok = 0, errors = 0, full_loads = 0;
};

// Runs the whole pipeline on `bytes`; returns whether it loaded.
bool TryLoad(std::span<const uint8_t> bytes, bool dequantize, Outcome& out) {
  auto f = ParseGguf(bytes);
  if (!f.ok()) {
    ++out.errors;
    return false;
  }
  auto w = GgufToWeights(*f, dequantize);
  if (!w.ok()) {
    ++out.errors;
    return false;
  }
  ++out.ok;
  if (dequantize) {
    ++out.full_loads;
    EXPECT_EQ(w->tensors.size(), f->tensors.size());
  }
  return true;
}

TEST(GgufFuzz, MutatedRealModelNeverCrashes) {
  const std::string path = ::kvstream::testing::DefaultModelPath();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model file absent: " << path;
  const auto t0 = std::chrono::steady_clock::now();
  Bytes buf = ::kvstream::testing::ReadFileBytes(path);
  uint64_t data_offset = 0;
  {
    auto f = ParseGguf(buf);
    ASSERT_TRUE(f.ok()) << f.status();
    data_offset = f->data_offset;
  }
  ASSERT_GT(data_offset, 20000u);
  // The tensor table is the last ~20 KB before the data (272 records).
  const uint64_t table_begin = data_offset - 20000;

  std::mt19937_64 rng(0x6b7673747265616dULL);  // "kvstream"
  auto uniform = [&](uint64_t lo, uint64_t hi) {  // [lo, hi)
    return std::uniform_int_distribution<uint64_t>(lo, hi - 1)(rng);
  };
  const Kind plan[] = {Kind::kTruncateHeader, Kind::kFlipHeader, Kind::kFlipTable,
                       Kind::kFlipHeader,     Kind::kSmashU64,   Kind::kFlipTable,
                       Kind::kTruncateHeader, Kind::kFlipData,   Kind::kFlipHeader,
                       Kind::kTruncateData};
  Outcome out;
  int truncations = 0, truncation_errors = 0;
  for (int i = 0; i < kMutations; ++i) {
    const Kind kind = plan[i % std::size(plan)];
    SCOPED_TRACE(i);
    if (kind == Kind::kTruncateHeader || kind == Kind::kTruncateData) {
      const uint64_t n = kind == Kind::kTruncateHeader ? uniform(0, data_offset)
                                                       : uniform(data_offset, buf.size());
      const Bytes prefix(buf.begin(), buf.begin() + n);  // exact-size allocation
      ++truncations;
      truncation_errors += !TryLoad(prefix, false, out);
      continue;
    }
    // In-place byte changes, undone after the attempt.
    std::vector<std::pair<uint64_t, uint8_t>> saved;
    auto set = [&](uint64_t at, uint8_t v) {
      saved.emplace_back(at, buf[at]);
      buf[at] = v;
    };
    const int n_flips = static_cast<int>(uniform(1, 9));
    for (int k = 0; k < n_flips; ++k) {
      switch (kind) {
        case Kind::kFlipHeader:  // mostly the first 4 KB: header, counts, first keys
          set(k % 2 ? uniform(0, 4096) : uniform(0, data_offset), static_cast<uint8_t>(uniform(0, 256)));
          break;
        case Kind::kFlipTable:
          set(uniform(table_begin, data_offset), static_cast<uint8_t>(uniform(0, 256)));
          break;
        case Kind::kFlipData:
          set(uniform(data_offset, buf.size()), static_cast<uint8_t>(uniform(0, 256)));
          break;
        case Kind::kSmashU64: {  // a length, count or offset field set to an extreme
          static constexpr uint64_t kValues[] = {0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 1ULL << 40,
                                                 ~0ULL, 1ULL << 63};
          const uint64_t at = k % 2 ? uniform(0, 64) : uniform(table_begin, data_offset - 8);
          const uint64_t v = kValues[uniform(0, std::size(kValues))];
          for (int b = 0; b < 8; ++b) set(at + b, static_cast<uint8_t>(v >> (8 * b)));
          break;
        }
        default:
          break;
      }
    }
    const bool full = kind == Kind::kFlipData && out.full_loads < kFullLoads;
    TryLoad(buf, full, out);
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) buf[it->first] = it->second;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("gguf fuzz: %d mutations, %d loaded, %d rejected, %d fully dequantized, %.1f s\n",
              kMutations, out.ok, out.errors, out.full_loads, secs);
  EXPECT_EQ(out.ok + out.errors, kMutations);
  EXPECT_EQ(truncation_errors, truncations);  // a cut file never loads
  EXPECT_EQ(out.full_loads, kFullLoads);       // data flips leave the file valid
  EXPECT_GT(out.errors, kMutations / 4);
}

// Many cheap mutations of small files reach deeper into the value and
// tensor-record parsing than 200 copies of the real model can: the gguf-py
// fixture (every metadata type, nested arrays, 64-byte alignment) and a
// complete tiny Llama (config, tokenizer, mapping and dequantization).
void FuzzSmallFile(const Bytes& original, uint64_t seed, int iterations, int& loaded) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi - 1)(rng);
  };
  Outcome out;
  for (int i = 0; i < iterations; ++i) {
    Bytes b = original;
    const int n = static_cast<int>(uniform(1, 5));
    for (int k = 0; k < n; ++k) {
      const uint64_t at = uniform(0, b.size());
      if (uniform(0, 4) == 0 && at + 8 <= b.size()) {  // a whole u64 field
        const uint64_t v = uniform(0, 2) ? uniform(0, 1ULL << 20) : ~0ULL >> uniform(0, 64);
        for (int j = 0; j < 8; ++j) b[at + j] = static_cast<uint8_t>(v >> (8 * j));
      } else {
        b[at] ^= static_cast<uint8_t>(1u << uniform(0, 8));
      }
    }
    if (uniform(0, 8) == 0) b.resize(uniform(0, b.size()));  // exact-size for ASan
    b.shrink_to_fit();
    TryLoad(b, /*dequantize=*/true, out);
  }
  loaded = out.ok;
  EXPECT_EQ(out.ok + out.errors, iterations);
}

TEST(GgufFuzz, MutatedFixtureAndTinyLlamaNeverCrash) {
  int loaded = 0;
  const Bytes fixture =
      ::kvstream::testing::ReadFileBytes(::kvstream::testing::FixtureDir() + "/gguf/all_types.gguf");
  ASSERT_TRUE(ParseGguf(fixture).ok());
  FuzzSmallFile(fixture, 1, 20000, loaded);
  EXPECT_EQ(loaded, 0);  // not a Llama file: parsing may pass, GgufToWeights never
  const Bytes tiny = ::kvstream::testing::BuildGguf(::kvstream::testing::Tiny({.bias = true}));
  FuzzSmallFile(tiny, 2, 20000, loaded);
  EXPECT_GT(loaded, 0);  // flips in tensor data keep the file valid
  std::printf("tiny llama fuzz: %d of 20000 mutations loaded\n", loaded);
}

}  // namespace
}  // namespace kvstream::loader
