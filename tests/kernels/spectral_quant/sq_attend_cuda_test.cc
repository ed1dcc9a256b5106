// K2 sq_attend on the device vs its CPU twin (spectral_quant.md §9 test 6):
// relative error <= 1e-3 with an fp32 dense segment (or none) and <= 1e-2 with
// bf16, over head_dim 64/128, GQA groups 1/3/4, Tk 1/54/97/4097, one split and
// the planned split-K, causal prompt chunks, QJL, a strided dense segment,
// many 128-key chunks per warp and chunks mixing compressed and dense keys.
// Fresh random inputs per case; outputs NaN-poisoned before each launch.
// Tq == 1 runs the decode kernel (sq_attend_decode.cuh); the Decode* tests
// cover its paths (QJL, dense segment, causal positions, odd Tk, splits, 8-
// and 4-byte record copies) and LaunchSqAttendLegacy on the same problems.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/spectral_quant/spectral_quant.h"
#include "tests/kernels/spectral_quant/sq_attend_problem.h"
#include "tests/kernels/spectral_quant/sq_cuda_util.h"

namespace kvstream {
namespace {

using testing::Down;
using testing::MakeSqAttendProblem;
using testing::SqAttendProblem;
using testing::SqAttendShape;
using testing::SqDeviceArena;

// The shape of a case: head dim D, GQA group G, Tk compressed and Td dense
// keys (dense dtype dt), Tq queries, Hkv KV heads; the flags (qjl, causal,
// shuffled_key_pos) start off. Defaults are SqAttendShape's.
SqAttendShape Shape(int D, int G, int Tk, int Td = 0, int Tq = 1, KvDType dt = KvDType::kFp32, int Hkv = 2) {
  SqAttendShape s;
  s.head_dim = D, s.group = G, s.num_keys = Tk, s.num_dense = Td, s.num_queries = Tq;
  s.dense_dtype = dt, s.num_kv_heads = Hkv;
  return s;
}

double Tol(const SqAttendShape& s) { return s.num_dense > 0 && s.dense_dtype == KvDType::kBf16 ? 1e-2 : 1e-3; }

struct RunOpts {
  bool legacy = false;     // LaunchSqAttendLegacy instead of LaunchSqAttend
  bool misalign = false;   // records start 4 bytes past an 8-byte boundary (decode: 4-byte copies)
  int live = -1;           // >= 0: the live Tk in device memory (num_keys_live), num_keys the capacity
};

// Runs the twin and the device (with `splits`, 0 = planned) on one problem;
// dense_pad > 0 re-lays the dense segment with that many extra elements per token.
void CheckAgainstTwin(const SqAttendShape& s, uint32_t seed, int splits, int dense_pad = 0, RunOpts o = {}) {
  SqAttendProblem P = MakeSqAttendProblem(s, seed);
  std::vector<float> e_want(P.OutSize(), NAN), d_want(P.OutSize(), NAN);
  SqAttendParams p = P.Params();
  p.a_eig = e_want.data(), p.a_dense = d_want.data();
  if (o.live >= 0) p.num_keys_live = &o.live;
  ASSERT_TRUE(SqAttendRef(p));

  SqDeviceArena A;
  SqAttendParams dp = p;
  dp.q_rot = A.Up(P.q_rot), dp.q_raw = p.q_raw ? A.Up(P.q_raw) : nullptr;
  dp.q_sketch = p.q_sketch ? A.Up(P.q_sketch) : nullptr;
  if (o.misalign) {  // one leading word: cudaMalloc is 256-byte aligned, so +1 word is 4 mod 8
    std::vector<uint32_t> k(P.krec.size() + 1, 0u), v(P.vrec.size() + 1, 0u);
    std::copy(P.krec.begin(), P.krec.end(), k.begin() + 1);
    std::copy(P.vrec.begin(), P.vrec.end(), v.begin() + 1);
    dp.k_records = A.Up(k) + 1, dp.v_records = A.Up(v) + 1;
  } else {
    dp.k_records = A.Up(P.krec), dp.v_records = A.Up(P.vrec);
  }
  dp.k_rnorm = p.k_rnorm ? A.Up(P.rnorm) : nullptr, dp.k_signs = p.k_signs ? A.Up(P.signs) : nullptr;
  dp.k_plan = testing::UploadPlan(P.kplan, &A), dp.v_plan = testing::UploadPlan(P.vplan, &A);
  dp.tables = A.Up(P.tables);
  if (s.num_dense > 0) {
    const size_t esz = KvDTypeSize(s.dense_dtype), row = size_t(s.num_kv_heads) * s.head_dim * esz;
    const size_t srow = row + size_t(dense_pad) * esz;
    std::vector<uint8_t> k(srow * s.num_dense, 0xff), v(srow * s.num_dense, 0xff);  // pads hold NaN bits
    for (int j = 0; j < s.num_dense; ++j) {
      std::memcpy(&k[j * srow], &P.dense_k[j * row], row);
      std::memcpy(&v[j * srow], &P.dense_v[j * row], row);
    }
    dp.dense_k = A.Up(k), dp.dense_v = A.Up(v);
    dp.dense_stride_t = dense_pad ? int64_t(s.num_kv_heads) * s.head_dim + dense_pad : 0;
    if (dense_pad) {
      ASSERT_NE(dp.dense_stride_t, int64_t(s.num_kv_heads) * s.head_dim) << "case must be strided";
    }
  }
  if (s.causal) dp.q_pos = A.Up(P.q_pos), dp.k_pos = A.Up(P.k_pos), dp.d_pos = A.Up(P.d_pos);
  if (o.live >= 0) dp.num_keys_live = A.Up(std::vector<int32_t>{o.live});
  int dev = 0, sms = 0;
  ASSERT_CUDA(cudaGetDevice(&dev));
  ASSERT_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  dp.num_splits = splits > 0 ? splits
                             : SqPlanAttendSplits(P.Hq(), s.num_kv_heads, s.num_queries, s.num_keys + s.num_dense, sms);
  const size_t ws = SqAttendWorkspaceBytes(P.Hq(), s.num_queries, dp.num_splits, s.head_dim);
  dp.workspace = ws ? A.Poisoned<float>(ws / sizeof(float), NAN) : nullptr;
  dp.a_eig = A.Poisoned<float>(P.OutSize(), NAN), dp.a_dense = A.Poisoned<float>(P.OutSize(), NAN);
  ASSERT_CUDA(o.legacy ? LaunchSqAttendLegacy(dp, nullptr) : LaunchSqAttend(dp, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> e_got = Down(dp.a_eig, P.OutSize()), d_got = Down(dp.a_dense, P.OutSize());
  SCOPED_TRACE("splits=" + std::to_string(dp.num_splits) + (o.legacy ? " legacy" : "") +
               (o.live >= 0 ? " live=" + std::to_string(o.live) : "") +
               (o.misalign ? " misaligned" : "") + " Wk=" + std::to_string(P.kplan.words) +
               " Wv=" + std::to_string(P.vplan.words));
  EXPECT_LE(testing::SqRelErr(e_got, e_want), Tol(s)) << "a_eig";
  EXPECT_LE(testing::SqRelErr(d_got, d_want), Tol(s)) << "a_dense";
  if (s.num_dense == 0) {
    for (float x : d_got) ASSERT_EQ(x, 0.0f) << "a_dense must be 0 without a dense segment";
  }
}

std::string Name(const SqAttendShape& s) {
  return "D=" + std::to_string(s.head_dim) + " G=" + std::to_string(s.group) + " Tk=" + std::to_string(s.num_keys) +
         " Td=" + std::to_string(s.num_dense) + " Tq=" + std::to_string(s.num_queries) + " " +
         KvDTypeName(s.dense_dtype) + (s.qjl ? " qjl" : "") + (s.causal ? " causal" : "");
}

TEST(SqAttendCuda, DecodeMatchesCpuTwinFp32) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 1;
  for (int D : {64, 128})
    for (int G : {1, 3, 4})
      for (int Tk : {1, 54, 97, 4097}) {
        const SqAttendShape s = Shape(D, G, Tk);
        SCOPED_TRACE(Name(s));
        CheckAgainstTwin(s, seed++, 1);
        CheckAgainstTwin(s, seed++, 0);
      }
}

TEST(SqAttendCuda, SplitKEqualsOneSplit) {
  SKIP_WITHOUT_DEVICE();
  const SqAttendShape s = Shape(128, 4, 4097, 0, 1, KvDType::kFp32, /*Hkv=*/8);
  for (int S : {2, 7, 64, 128}) CheckAgainstTwin(s, 77, S);
}

TEST(SqAttendCuda, CausalChunkWithDenseSegmentMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 300;
  for (KvDType dt : {KvDType::kFp32, KvDType::kBf16})
    for (int D : {64, 128})
      for (int G : {3, 4}) {
        SqAttendShape s = Shape(D, G, 97, 54, 54, dt);
        s.causal = true;
        SCOPED_TRACE(Name(s));
        CheckAgainstTwin(s, seed++, 1);
        CheckAgainstTwin(s, seed++, 5);
      }
}

// The kernel walks each warp's share of a split in 128-key chunks (4 keys per
// lane) with the next chunk's records prefetched a phase ahead: many chunks per
// warp, a partial last chunk, and chunks that hold compressed and dense keys
// side by side (the compressed field loop scores stale tile rows there, which
// the dense dot must not inherit).
TEST(SqAttendCuda, ManyChunksAndMixedChunksMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 800;
  for (KvDType dt : {KvDType::kFp32, KvDType::kBf16})
    for (int D : {64, 128}) {
      SqAttendShape s = Shape(D, 4, 1000, 301, 1, dt);
      SCOPED_TRACE(Name(s));
      CheckAgainstTwin(s, seed++, 1);
      CheckAgainstTwin(s, seed++, 3);
      s.num_queries = 5, s.causal = true;
      CheckAgainstTwin(s, seed++, 2);
    }
}

TEST(SqAttendCuda, MaskFollowsShuffledPositions) {
  SKIP_WITHOUT_DEVICE();
  SqAttendShape s;
  s.head_dim = 128, s.group = 4, s.num_keys = 4097, s.num_queries = 7, s.causal = true, s.shuffled_key_pos = true;
  CheckAgainstTwin(s, 400, 0);
}

TEST(SqAttendCuda, QjlCorrectionMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  for (int D : {64, 128}) {
    SqAttendShape s = Shape(D, 3, 97, 0, 2);
    s.qjl = true;
    SCOPED_TRACE(Name(s));
    CheckAgainstTwin(s, 500 + D, 1);
    CheckAgainstTwin(s, 600 + D, 3);
  }
}

TEST(SqAttendCuda, DenseOnlyAndStridedDenseMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  SqAttendShape s;
  s.head_dim = 64, s.group = 4, s.num_keys = 0, s.num_dense = 97, s.num_queries = 3, s.causal = true;
  s.dense_dtype = KvDType::kBf16;
  CheckAgainstTwin(s, 700, 1);
  s.num_keys = 54, s.dense_dtype = KvDType::kFp32;
  CheckAgainstTwin(s, 701, 2, /*dense_pad=*/24);
}

// Decode (Tq == 1) with QJL on, odd Tk, one / several / planned splits, and
// the same problems through 4-byte record copies and the legacy kernel.
TEST(SqAttendCuda, DecodeQjlMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 900;
  for (int D : {64, 128})
    for (int G : {3, 4, 8})
      for (int Tk : {97, 1201}) {
        SqAttendShape s = Shape(D, G, Tk);
        s.qjl = true;
        SCOPED_TRACE(Name(s));
        CheckAgainstTwin(s, seed, 1);
        CheckAgainstTwin(s, seed + 1, 3);
        CheckAgainstTwin(s, seed + 2, 0);
        CheckAgainstTwin(s, seed + 2, 0, 0, RunOpts{false, true});
        CheckAgainstTwin(s, seed + 2, 0, 0, RunOpts{true, false});
        seed += 3;
      }
}

// Decode with a dense segment (bf16 and fp32, strided), causal positions
// (the decode kernel applies one query position to every row) and odd Tk.
TEST(SqAttendCuda, DecodeDenseAndCausalMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 1000;
  for (KvDType dt : {KvDType::kFp32, KvDType::kBf16})
    for (int D : {64, 128}) {
      SqAttendShape s = Shape(D, 4, 777, 33, 1, dt);
      SCOPED_TRACE(Name(s));
      CheckAgainstTwin(s, seed++, 1);
      CheckAgainstTwin(s, seed++, 5);
      CheckAgainstTwin(s, seed++, 2, /*dense_pad=*/8);
      CheckAgainstTwin(s, seed, 0, 0, RunOpts{false, true});
      CheckAgainstTwin(s, seed++, 0, 0, RunOpts{true, false});
      s.causal = true, s.shuffled_key_pos = true, s.qjl = true;
      SCOPED_TRACE(Name(s));
      CheckAgainstTwin(s, seed++, 1);
      CheckAgainstTwin(s, seed++, 0);
    }
}

// Many decode problems with fresh random plans (record words odd and even,
// so both copy widths) and every tile path: Tk below, at and past a warp's
// 128-key chunk, G not a multiple of the 4-row tile.
TEST(SqAttendCuda, DecodeRandomPlansMatchTwin) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 1100;
  for (int D : {64, 128})
    for (int Tk : {1, 31, 128, 129, 513, 2049}) {
      const SqAttendShape s = Shape(D, (Tk % 2) ? 3 : 4, Tk, 0, 1, KvDType::kFp32, /*Hkv=*/3);
      SCOPED_TRACE(Name(s));
      CheckAgainstTwin(s, seed++, 1);
      CheckAgainstTwin(s, seed++, 0);
      CheckAgainstTwin(s, seed++, 0, 0, RunOpts{false, true});
    }
}

// Graph-replayed decode: num_keys is the records' capacity (splits planned
// on it) and the live Tk is read from device memory, so most splits cover
// nothing or only dense keys; the twin attends over the live records.
TEST(SqAttendCuda, LiveKeyCountInDeviceMemoryMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 300;
  for (int D : {64, 128})
    for (int live : {0, 1, 97, 1000, 4097}) {
      const SqAttendShape s = Shape(D, 4, 4097, /*Td=*/33, 1, KvDType::kBf16);
      SCOPED_TRACE(Name(s));
      RunOpts o;
      o.live = live;
      CheckAgainstTwin(s, seed++, 0, 0, o);
      o.legacy = true;
      CheckAgainstTwin(s, seed++, 0, 0, o);
    }
}

TEST(SqAttendCuda, RejectsMissingWorkspace) {
  SKIP_WITHOUT_DEVICE();
  SqAttendShape s;
  s.head_dim = 64;
  const SqAttendProblem P = MakeSqAttendProblem(s, 9);
  SqAttendParams p = P.Params();
  std::vector<float> out(P.OutSize());
  p.a_eig = out.data(), p.num_splits = 4;
  EXPECT_EQ(LaunchSqAttend(p, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kvstream
