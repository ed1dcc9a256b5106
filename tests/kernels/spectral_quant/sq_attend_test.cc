// CPU twin of K2 sq_attend (spectral_quant.md §4.4, §7, §9 test 6): the twin
// equals softmax(q K^T scale) V^ computed through K3 in raw coordinates
// (relative error <= 1e-5), with the causal mask by positions, GQA groups 3
// and 4, a dense bf16/fp32 segment sharing the denominator, and QJL on.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/kernels/spectral_quant/sq_attend_problem.h"

namespace kvstream {
namespace {

using testing::MakeSqAttendProblem;
using testing::SqAttendProblem;
using testing::SqAttendShape;

constexpr double kTwinTol = 1e-5;

void ExpectTwinMatchesReference(const SqAttendShape& s, uint32_t seed) {
  const SqAttendProblem P = MakeSqAttendProblem(s, seed);
  std::vector<float> a_eig(P.OutSize(), NAN), a_dense(P.OutSize(), NAN);
  SqAttendParams p = P.Params();
  p.a_eig = a_eig.data(), p.a_dense = a_dense.data();
  ASSERT_EQ(SqAttendValidate(p), nullptr);
  ASSERT_TRUE(SqAttendRef(p));
  const std::vector<float> got = testing::SqComposeOutput(P, a_eig, a_dense);
  const std::vector<float> want = testing::SqAttendReference(P);
  EXPECT_LE(testing::SqRelErr(got, want), kTwinTol);
  if (s.causal && s.num_queries > 1) {  // query 0 sits before every key
    for (int hq = 0; hq < P.Hq(); ++hq)
      for (int c = 0; c < s.head_dim; ++c) {
        const size_t i = size_t(hq) * s.num_queries * s.head_dim + c;
        ASSERT_EQ(a_eig[i], 0.0f);
        ASSERT_EQ(a_dense[i], 0.0f);
      }
  }
}

TEST(SqAttendRef, DecodeEqualsSoftmaxThroughK3) {
  for (int D : {64, 128})
    for (int G : {1, 3, 4}) {
      SCOPED_TRACE("D=" + std::to_string(D) + " G=" + std::to_string(G));
      SqAttendShape s;
      s.head_dim = D, s.group = G, s.num_keys = 97;
      ExpectTwinMatchesReference(s, 11 + D + G);
    }
}

TEST(SqAttendRef, CausalChunkWithDenseSegmentEqualsReference) {
  for (KvDType dt : {KvDType::kFp32, KvDType::kBf16})
    for (int G : {3, 4}) {
      SCOPED_TRACE(std::string(KvDTypeName(dt)) + " G=" + std::to_string(G));
      SqAttendShape s;
      s.head_dim = 64, s.group = G, s.num_keys = 54, s.num_dense = 13, s.num_queries = 13;
      s.causal = true, s.dense_dtype = dt;
      ExpectTwinMatchesReference(s, 21 + G);
    }
}

TEST(SqAttendRef, MaskFollowsPositionsNotIndices) {
  SqAttendShape s;
  s.head_dim = 128, s.group = 4, s.num_keys = 97, s.num_queries = 5, s.causal = true, s.shuffled_key_pos = true;
  ExpectTwinMatchesReference(s, 31);
}

TEST(SqAttendRef, QjlCorrectionEqualsReference) {
  for (int D : {64, 128}) {
    SCOPED_TRACE("D=" + std::to_string(D));
    SqAttendShape s;
    s.head_dim = D, s.group = 3, s.num_keys = 54, s.num_queries = 2, s.qjl = true;
    ExpectTwinMatchesReference(s, 41 + D);
  }
}

TEST(SqAttendRef, DenseOnlyEqualsReference) {
  SqAttendShape s;
  s.head_dim = 64, s.group = 4, s.num_keys = 0, s.num_dense = 33, s.num_queries = 3, s.causal = true;
  ExpectTwinMatchesReference(s, 51);
}

TEST(SqAttendPlan, SplitsCoverEveryKeyOnceAndRespectBounds) {
  for (int n : {1, 31, 97, 4097, 32768})
    for (int S : {1, 2, 7, 64, 128}) {
      int covered = 0, prev_end = 0;
      for (int sp = 0; sp < S; ++sp) {
        int b, e;
        SqAttendSplitRange(n, S, sp, &b, &e);
        ASSERT_EQ(b, prev_end);
        ASSERT_LE(b, e);
        if (b < n) {
          ASSERT_EQ(b % kSqAttendSplitAlign, 0);
        }
        covered += e - b, prev_end = e;
      }
      ASSERT_EQ(covered, n) << "n=" << n << " S=" << S;
    }
  EXPECT_EQ(SqPlanAttendSplits(32, 8, 1, 100, 132), 1);
  const int s32k = SqPlanAttendSplits(32, 8, 1, 32768, 132);
  EXPECT_GE(s32k, 8);
  EXPECT_LE(s32k, kSqAttendMaxSplits);
  EXPECT_EQ(SqAttendWorkspaceBytes(32, 1, 1, 128), 0u);
  EXPECT_EQ(SqAttendWorkspaceBytes(32, 1, 4, 128), size_t(4) * 32 * (2 * 128 + 2) * 4);
}

// A graph-replayed decode step names its live Tk in device memory
// (num_keys_live) and num_keys is the records' capacity: the twin attends
// over exactly the first live records, then the dense segment, as a call
// with num_keys = live does; a live count past the capacity is clamped.
TEST(SqAttendRef, LiveKeyCountAttendsOverThatManyRecords) {
  SqAttendShape s;
  s.head_dim = 64, s.group = 4, s.num_keys = 97, s.num_dense = 13, s.dense_dtype = KvDType::kBf16;
  const SqAttendProblem P = MakeSqAttendProblem(s, 77);
  auto run = [&](int num_keys, const int32_t* live) {
    std::vector<float> a(P.OutSize(), NAN), d(P.OutSize(), NAN);
    SqAttendParams p = P.Params();
    p.num_keys = num_keys, p.num_keys_live = live, p.a_eig = a.data(), p.a_dense = d.data();
    EXPECT_TRUE(SqAttendRef(p));
    a.insert(a.end(), d.begin(), d.end());
    return a;
  };
  for (int32_t live : {0, 1, 54}) {
    SCOPED_TRACE("live=" + std::to_string(live));
    EXPECT_EQ(run(97, &live), run(live, nullptr));
    EXPECT_NE(run(97, &live), run(97, nullptr));
  }
  const int32_t past = 500;
  EXPECT_EQ(run(97, &past), run(97, nullptr));
}

TEST(SqAttendRef, RejectsDenseWithoutRawQuery) {
  SqAttendShape s;
  s.head_dim = 64, s.num_dense = 4;
  const SqAttendProblem P = MakeSqAttendProblem(s, 3);
  std::vector<float> a(P.OutSize()), d(P.OutSize());
  SqAttendParams p = P.Params();
  p.a_eig = a.data(), p.a_dense = d.data(), p.q_raw = nullptr;
  EXPECT_NE(SqAttendValidate(p), nullptr);
  EXPECT_FALSE(SqAttendRef(p));
}

}  // namespace
}  // namespace kvstream
