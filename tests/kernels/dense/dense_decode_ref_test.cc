// CPU twin of the dense paged decode attention vs a naive fp64 attention over
// gathered contiguous K/V (shuffled page ids, NaN-poisoned outputs and unused
// pool slots), plus the twin's split, stride and validation behaviour.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/dense/dense_decode.h"
#include "tests/kernels/dense/dense_decode_problem.h"

namespace kvstream {
namespace {

using testing::AllFinite;
using testing::DecodeProblem;
using testing::DecodeShape;
using testing::MakeDecodeProblem;
using testing::NaiveAttentionFp64;
using testing::PoisonNaN;
using testing::RelError;
using testing::ToDouble;
using testing::TwinBound;

// Runs the twin into a NaN-poisoned output and returns it decoded to double.
std::vector<double> RunTwin(const DecodeProblem& pr, int splits = 1) {
  std::vector<uint8_t> out(pr.OutBytes());
  PoisonNaN(out.data(), pr.OutElems(), pr.shape.dtype);
  const DenseDecodeWorkspaceBytes ws = DenseDecodeWorkspace(pr.batch, pr.shape.num_heads, splits, pr.shape.head_dim);
  std::vector<float> po(ws.partial_out / 4 + 1), pl(ws.partial_lse / 4 + 1);
  EXPECT_TRUE(DenseDecodeRef(pr.Params(out.data(), splits, po.data(), pl.data())));
  return ToDouble(out.data(), pr.OutElems(), pr.shape.dtype);
}

// (head_dim, group G, storage dtype)
using TwinCase = std::tuple<int, int, KvDType>;

class DenseDecodeTwinTest : public ::testing::TestWithParam<TwinCase> {
 protected:
  DecodeShape Shape(std::vector<int> lens) const {
    DecodeShape s;
    s.head_dim = std::get<0>(GetParam());
    s.num_kv_heads = 2;
    s.num_heads = 2 * std::get<1>(GetParam());
    s.dtype = std::get<2>(GetParam());
    s.lens = std::move(lens);
    return s;
  }
};

TEST_P(DenseDecodeTwinTest, SingleSequenceMatchesFp64Reference) {
  for (int len : {1, 54, 97, 4097}) {
    const DecodeProblem pr = MakeDecodeProblem(Shape({len}), 1000 + len);
    const std::vector<double> got = RunTwin(pr);
    ASSERT_TRUE(AllFinite(got)) << "len " << len << ": an output was not written or read a poisoned slot";
    EXPECT_LT(RelError(got, NaiveAttentionFp64(pr)), TwinBound(pr.shape.dtype)) << "len " << len;
  }
}

TEST_P(DenseDecodeTwinTest, BatchOf17MixedLengthsMatchesFp64Reference) {
  std::vector<int> lens;
  for (int b = 0; b < 17; ++b) lens.push_back(std::vector<int>{1, 54, 97, 4097, 300, 16, 17}[b % 7]);
  const DecodeProblem pr = MakeDecodeProblem(Shape(lens), 77);
  const std::vector<double> got = RunTwin(pr);
  ASSERT_TRUE(AllFinite(got));
  EXPECT_LT(RelError(got, NaiveAttentionFp64(pr)), TwinBound(pr.shape.dtype));
}

TEST_P(DenseDecodeTwinTest, SplitsMatchFp64Reference) {
  const DecodeProblem pr = MakeDecodeProblem(Shape({4097, 97, 1}), 5);
  for (int splits : {2, 7, 33}) {
    const std::vector<double> got = RunTwin(pr, splits);
    ASSERT_TRUE(AllFinite(got)) << splits << " splits";
    EXPECT_LT(RelError(got, NaiveAttentionFp64(pr)), TwinBound(pr.shape.dtype)) << splits << " splits";
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDimGroupDtype, DenseDecodeTwinTest,
                         ::testing::Combine(::testing::Values(64, 128), ::testing::Values(1, 3, 4),
                                            ::testing::Values(KvDType::kFp32, KvDType::kBf16, KvDType::kFp16)),
                         [](const ::testing::TestParamInfo<TwinCase>& i) {
                           std::string name = "D";  // appends only: gcc 12 warns (-Wrestrict) on "D" + string
                           name += std::to_string(std::get<0>(i.param));
                           name += "_G";
                           name += std::to_string(std::get<1>(i.param));
                           name += "_";
                           name += KvDTypeName(std::get<2>(i.param));
                           return name;
                         });

TEST_P(DenseDecodeTwinTest, FusedAppendEqualsAppendThenAttendAndStoresTheRows) {
  DecodeProblem pr = MakeDecodeProblem(Shape({1, 54, 97, 0, 33}), 77);
  for (int splits : {1, 3}) {
    DecodeProblem fused = testing::TakeNewestRows(pr, /*row_pad=*/16);
    const std::vector<double> got = RunTwin(fused, splits);
    ASSERT_TRUE(AllFinite(got)) << splits << " splits: the newest row was read from the poisoned pool";
    EXPECT_EQ(got, RunTwin(pr, splits)) << splits << " splits";
    EXPECT_EQ(fused.k_pool, pr.k_pool) << "the twin stores k_new at token T-1";
    EXPECT_EQ(fused.v_pool, pr.v_pool);
  }
}

TEST(DenseDecodeTwin, AwkwardPageSizesMatchFp64Reference) {
  for (int page : {1, 5, 64}) {
    DecodeShape s;
    s.head_dim = 64;
    s.num_heads = 9;  // SmolLM2-135M: 9 heads over 3 KV heads
    s.num_kv_heads = 3;
    s.page_size = page;
    s.dtype = KvDType::kFp32;
    s.lens = {54, 97, 1};
    const DecodeProblem pr = MakeDecodeProblem(s, 9 + page);
    EXPECT_LT(RelError(RunTwin(pr, 3), NaiveAttentionFp64(pr)), 1e-5) << "page size " << page;
  }
}

TEST(DenseDecodeTwin, StridedQueryEqualsPackedQuery) {
  DecodeShape s;
  s.dtype = KvDType::kBf16;
  s.lens = {97, 54};
  const DecodeProblem packed = MakeDecodeProblem(s, 3);
  s.q_row_pad = 2 * s.num_kv_heads * s.head_dim;  // q as the first third of a fused [B, (H+2Hkv)*D] qkv row
  DecodeProblem strided = MakeDecodeProblem(s, 3);
  ASSERT_NE(strided.q_stride_b, static_cast<int64_t>(s.num_heads) * s.head_dim) << "q must be strided";
  for (int b = 0; b < strided.batch; ++b) {  // same q values as the packed problem, at the strided rows
    for (size_t i = 0; i < static_cast<size_t>(s.num_heads) * s.head_dim; ++i) {
      const float v = LoadAsFloat(packed.q.data(), b * packed.q_stride_b + i, s.dtype);
      StoreFromFloat(strided.q.data(), b * strided.q_stride_b + i, v, s.dtype);
    }
  }
  strided.k_pool = packed.k_pool;
  strided.v_pool = packed.v_pool;
  strided.block_table = packed.block_table;
  EXPECT_EQ(RunTwin(strided), RunTwin(packed));
}

TEST(DenseDecodeTwin, PartialResultsOfEmptySplitsAreZeroWithMinusInfLse) {
  DecodeShape s;
  s.dtype = KvDType::kFp32;
  s.lens = {20};  // 33 splits of 16-token chunks: splits 2..32 are empty
  const DecodeProblem pr = MakeDecodeProblem(s, 11);
  const int splits = 33;
  std::vector<float> out(pr.OutElems());
  std::vector<float> po(static_cast<size_t>(s.num_heads) * splits * s.head_dim, NAN), pl(s.num_heads * splits, NAN);
  ASSERT_TRUE(DenseDecodeRef(pr.Params(out.data(), splits, po.data(), pl.data())));
  for (int h = 0; h < s.num_heads; ++h) {
    for (int sp = 0; sp < splits; ++sp) {
      const float lse = pl[h * splits + sp];
      if (sp < 2) {
        EXPECT_TRUE(std::isfinite(lse)) << "head " << h << " split " << sp;
      } else {
        EXPECT_EQ(lse, -std::numeric_limits<float>::infinity()) << "head " << h << " split " << sp;
        for (int d = 0; d < s.head_dim; ++d) EXPECT_EQ(po[(h * splits + sp) * s.head_dim + d], 0.0f);
      }
    }
  }
}

TEST(DenseDecodeTwin, ZeroLengthSequenceGivesZeros) {
  DecodeShape s;
  s.dtype = KvDType::kBf16;
  s.lens = {0, 54};
  const DecodeProblem pr = MakeDecodeProblem(s, 12);
  for (int splits : {1, 4}) {
    const std::vector<double> got = RunTwin(pr, splits);
    ASSERT_TRUE(AllFinite(got));
    for (size_t i = 0; i < static_cast<size_t>(s.num_heads) * s.head_dim; ++i) EXPECT_EQ(got[i], 0.0);
    EXPECT_LT(RelError(got, NaiveAttentionFp64(pr)), TwinBound(s.dtype));
  }
}

TEST(DenseDecodeTwin, LengthsBeyondTheTableAreClampedToIt) {
  DecodeShape s;
  s.dtype = KvDType::kFp32;
  s.lens = {48};  // exactly 3 full pages; the table has a 4th (-1) column
  const DecodeProblem pr = MakeDecodeProblem(s, 13);
  DecodeProblem narrow = pr;  // the same 3 pages as the whole table, and a length far past MB*P = 48
  narrow.max_blocks_per_seq = 3;
  narrow.block_table.assign(pr.block_table.begin(), pr.block_table.begin() + 3);
  narrow.seq_lens[0] = 1 << 20;
  EXPECT_EQ(RunTwin(narrow), RunTwin(pr));
}

TEST(DenseDecodeTwin, RejectsInvalidParamsAndWritesNothing) {
  DecodeShape s;
  s.dtype = KvDType::kFp32;
  s.lens = {54};
  const DecodeProblem pr = MakeDecodeProblem(s, 14);
  std::vector<float> out(pr.OutElems(), 7.0f);
  const DenseDecodeParams good = pr.Params(out.data());
  ASSERT_EQ(DenseDecodeValidate(good), nullptr);
  std::vector<std::pair<std::string, DenseDecodeParams>> bad;
  auto add = [&](const char* what, auto edit) { DenseDecodeParams p = good; edit(p); bad.emplace_back(what, p); };
  add("head_dim 96", [](DenseDecodeParams& p) { p.head_dim = 96; });
  add("dtype out of enum", [](DenseDecodeParams& p) { p.dtype = KvDType::kCount; });
  add("H not a multiple of Hkv", [](DenseDecodeParams& p) { p.num_heads = 7; });
  add("page size 0", [](DenseDecodeParams& p) { p.page_size = 0; });
  add("max_seq_len past the table", [](DenseDecodeParams& p) { p.max_seq_len = p.max_blocks_per_seq * p.page_size + 1; });
  add("splits without workspace", [](DenseDecodeParams& p) { p.num_splits = 4; });
  add("too many splits", [](DenseDecodeParams& p) { p.num_splits = kDenseDecodeMaxSplits + 1; });
  add("null q", [](DenseDecodeParams& p) { p.q = nullptr; });
  add("NaN scale", [](DenseDecodeParams& p) { p.scale = NAN; });
  add("negative stride", [](DenseDecodeParams& p) { p.q_stride_b = -1; });
  add("k_new without v_new", [&](DenseDecodeParams& p) { p.k_new = pr.q.data(); });
  add("negative new-row stride", [](DenseDecodeParams& p) { p.new_stride_b = -1; });
  for (const auto& [what, p] : bad) {
    EXPECT_NE(DenseDecodeValidate(p), nullptr) << what;
    EXPECT_FALSE(DenseDecodeRef(p)) << what;
  }
  DenseDecodeParams out_of_pool = good;
  std::vector<int32_t> table = pr.block_table;
  table[1] = pr.num_blocks;  // a page id the twin would read, outside the pool
  out_of_pool.block_table = table.data();
  EXPECT_FALSE(DenseDecodeRef(out_of_pool));
  for (float v : out) EXPECT_EQ(v, 7.0f);
}

TEST(DenseDecodeTwin, EmptyBatchIsANoOp) {
  DenseDecodeParams p;
  p.batch = 0;
  p.num_heads = 4;
  p.num_kv_heads = 1;
  p.head_dim = 64;
  p.page_size = 16;
  p.num_blocks = 1;
  p.max_blocks_per_seq = 1;
  p.scale = 0.125f;
  EXPECT_EQ(DenseDecodeValidate(p), nullptr);
  EXPECT_TRUE(DenseDecodeRef(p));
}

}  // namespace
}  // namespace kvstream
