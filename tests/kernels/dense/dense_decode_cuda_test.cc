// LaunchDenseDecode on the GPU vs its CPU twin on the same random inputs
// (shuffled pages, NaN-poisoned unused pool slots and outputs). Skips with a
// reason where no CUDA device is present (CI, the development machine).
//
// Error bounds, ||gpu - twin|| / ||twin||: both compute in fp32 in a different
// order, then round out to the storage type: fp32 1e-4, bf16/fp16 2e-2.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/dense/dense_decode.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/dense/dense_decode_problem.h"

namespace kvstream {
namespace {

using testing::AllFinite;
using testing::DecodeProblem;
using testing::DecodeShape;
using testing::MakeDecodeProblem;
using testing::RelError;
using testing::ToDouble;

using testing::HaveDevice;

double GpuBound(KvDType t) { return t == KvDType::kFp32 ? 1e-4 : 2e-2; }

// Device copy of a problem plus output/workspace buffers (freed on scope exit).
struct DeviceProblem {
  std::vector<void*> allocs;
  DenseDecodeParams p;
  size_t out_bytes = 0;
  ~DeviceProblem() {
    for (void* a : allocs) cudaFree(a);
  }
  template <class T>
  T* Upload(const std::vector<T>& v) {
    void* d = nullptr;
    if (cudaMalloc(&d, std::max<size_t>(v.size() * sizeof(T), 16)) != cudaSuccess) return nullptr;
    allocs.push_back(d);
    cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
    return static_cast<T*>(d);
  }
  void* Alloc(size_t bytes) {
    void* d = nullptr;
    if (cudaMalloc(&d, std::max<size_t>(bytes, 16)) != cudaSuccess) return nullptr;
    allocs.push_back(d);
    return d;
  }
};

// Fills *dp with device buffers for pr and `splits` splits.
void Upload(const DecodeProblem& pr, int splits, DeviceProblem* dp) {
  const DenseDecodeWorkspaceBytes ws = DenseDecodeWorkspace(pr.batch, pr.shape.num_heads, splits, pr.shape.head_dim);
  dp->out_bytes = pr.OutBytes();
  dp->p = pr.Params(dp->Alloc(dp->out_bytes), splits, static_cast<float*>(dp->Alloc(ws.partial_out)),
                    static_cast<float*>(dp->Alloc(ws.partial_lse)));
  dp->p.q = dp->Upload(pr.q);
  dp->p.k_pool = dp->Upload(pr.k_pool);
  dp->p.v_pool = dp->Upload(pr.v_pool);
  dp->p.block_table = dp->Upload(pr.block_table);
  dp->p.seq_lens = dp->Upload(pr.seq_lens);
  if (!pr.k_new.empty()) {
    dp->p.k_new = dp->Upload(pr.k_new);
    dp->p.v_new = dp->Upload(pr.v_new);
  }
  if (splits == 1) dp->p.partial_out = dp->p.partial_lse = nullptr;
}

// Poisons the output (0xff bytes: NaN in fp32/fp16/bf16), launches, syncs and
// returns the output decoded to double; empty on a CUDA error (reported).
std::vector<double> RunGpu(DeviceProblem& dp, cudaStream_t stream = nullptr) {
  std::vector<uint8_t> host(dp.out_bytes);
  EXPECT_EQ(cudaMemset(dp.p.out, 0xff, dp.out_bytes), cudaSuccess);
  const cudaError_t launch = LaunchDenseDecode(dp.p, stream);
  EXPECT_EQ(launch, cudaSuccess) << cudaGetErrorString(launch);
  const cudaError_t sync = cudaDeviceSynchronize();
  EXPECT_EQ(sync, cudaSuccess) << cudaGetErrorString(sync);
  if (launch != cudaSuccess || sync != cudaSuccess) return {};
  EXPECT_EQ(cudaMemcpy(host.data(), dp.p.out, dp.out_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  return ToDouble(host.data(), host.size() / KvDTypeSize(dp.p.dtype), dp.p.dtype);
}

std::vector<double> RunTwin(const DecodeProblem& pr, int splits = 1) {
  std::vector<uint8_t> out(pr.OutBytes());
  testing::PoisonNaN(out.data(), pr.OutElems(), pr.shape.dtype);
  const DenseDecodeWorkspaceBytes ws = DenseDecodeWorkspace(pr.batch, pr.shape.num_heads, splits, pr.shape.head_dim);
  std::vector<float> po(ws.partial_out / 4 + 1), pl(ws.partial_lse / 4 + 1);
  EXPECT_TRUE(DenseDecodeRef(pr.Params(out.data(), splits, po.data(), pl.data())));
  return ToDouble(out.data(), pr.OutElems(), pr.shape.dtype);
}

int NumSms() {
  int dev = 0, sms = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  return sms;
}

using GpuCase = std::tuple<int, int, KvDType>;  // head_dim, group, dtype

class DenseDecodeCudaTest : public ::testing::TestWithParam<GpuCase> {
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

TEST_P(DenseDecodeCudaTest, MatchesCpuTwinSingleSequenceAndBatch17) {
  SKIP_WITHOUT_DEVICE();
  std::vector<std::vector<int>> batches = {{1}, {54}, {97}, {4097}};
  std::vector<int> mixed;
  for (int b = 0; b < 17; ++b) mixed.push_back(std::vector<int>{1, 54, 97, 4097, 300, 16, 17}[b % 7]);
  batches.push_back(mixed);
  for (const auto& lens : batches) {
    const DecodeProblem pr = MakeDecodeProblem(Shape(lens), 100 + lens.size() * 7 + lens[0]);
    const int splits = PlanDenseDecodeSplits(pr.batch, pr.shape.num_heads, pr.shape.num_kv_heads, pr.max_seq_len, NumSms());
    DeviceProblem dp;
    Upload(pr, splits, &dp);
    const std::vector<double> got = RunGpu(dp);
    ASSERT_EQ(got.size(), pr.OutElems());
    ASSERT_TRUE(AllFinite(got)) << "B " << pr.batch << " T0 " << lens[0] << ": unwritten or poisoned output";
    EXPECT_LT(RelError(got, RunTwin(pr, splits)), GpuBound(pr.shape.dtype))
        << "B " << pr.batch << " T0 " << lens[0] << " S " << splits;
  }
}

TEST_P(DenseDecodeCudaTest, SplitEqualsNoSplitAndPartialLseMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  const DecodeProblem pr = MakeDecodeProblem(Shape({4097, 97, 1}), 21);
  DeviceProblem one;
  Upload(pr, 1, &one);
  const std::vector<double> base = RunGpu(one);
  ASSERT_TRUE(AllFinite(base));
  for (int splits : {2, 7, 33, kDenseDecodeMaxSplits}) {
    DeviceProblem dp;
    Upload(pr, splits, &dp);
    const std::vector<double> got = RunGpu(dp);
    ASSERT_TRUE(AllFinite(got)) << splits << " splits";
    EXPECT_LT(RelError(got, base), GpuBound(pr.shape.dtype)) << splits << " splits";
    // The per-split log-sum-exp is the same function in kernel and twin.
    std::vector<float> lse(static_cast<size_t>(pr.batch) * pr.shape.num_heads * splits), ref_lse(lse.size());
    ASSERT_CUDA(cudaMemcpy(lse.data(), dp.p.partial_lse, lse.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<uint8_t> out(pr.OutBytes());
    std::vector<float> po(DenseDecodeWorkspace(pr.batch, pr.shape.num_heads, splits, pr.shape.head_dim).partial_out / 4);
    ASSERT_TRUE(DenseDecodeRef(pr.Params(out.data(), splits, po.data(), ref_lse.data())));
    for (size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(ref_lse[i])) {
        EXPECT_EQ(lse[i], ref_lse[i]) << "row " << i;
      } else {
        EXPECT_NEAR(lse[i], ref_lse[i], 1e-3 * (1.0 + std::abs(ref_lse[i]))) << "row " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDimGroupDtype, DenseDecodeCudaTest,
                         ::testing::Combine(::testing::Values(64, 128), ::testing::Values(1, 3, 4),
                                            ::testing::Values(KvDType::kFp32, KvDType::kBf16, KvDType::kFp16)),
                         [](const ::testing::TestParamInfo<GpuCase>& i) {
                           std::string name = "D";  // appends only: gcc 12 warns (-Wrestrict) on "D" + string
                           name += std::to_string(std::get<0>(i.param));
                           name += "_G";
                           name += std::to_string(std::get<1>(i.param));
                           name += "_";
                           name += KvDTypeName(std::get<2>(i.param));
                           return name;
                         });

// The newest row comes from k_new (its pool slots are NaN) and is stored into
// the pool; with split counters the last split CTA merges and zeroes them.
TEST_P(DenseDecodeCudaTest, FusedAppendAndMergeMatchCpuTwinStoreRowsAndResetCounters) {
  SKIP_WITHOUT_DEVICE();
  const DecodeProblem pr = MakeDecodeProblem(Shape({1, 54, 97, 4097, 0, 300}), 81);
  const DecodeProblem fused = testing::TakeNewestRows(pr, /*row_pad=*/16);
  const int planned = PlanDenseDecodeSplits(pr.batch, pr.shape.num_heads, pr.shape.num_kv_heads, pr.max_seq_len, NumSms());
  for (int splits : {1, 7, planned, kDenseDecodeMaxSplits}) {
    for (bool fused_merge : {false, true}) {
      DeviceProblem dp;
      Upload(fused, splits, &dp);
      const size_t n_counters = static_cast<size_t>(pr.batch) * pr.shape.num_heads;
      int* counters = static_cast<int*>(dp.Alloc(n_counters * sizeof(int)));
      ASSERT_CUDA(cudaMemset(counters, 0, n_counters * sizeof(int)));
      if (fused_merge) dp.p.split_counters = counters;
      const std::vector<double> want = RunTwin(pr, splits);
      for (int run = 0; run < 2; ++run) {  // the second run finds the rows stored and the counters reset
        const std::vector<double> got = RunGpu(dp);
        ASSERT_TRUE(AllFinite(got)) << splits << " splits, run " << run;
        EXPECT_LT(RelError(got, want), GpuBound(pr.shape.dtype)) << splits << " splits, merge " << fused_merge;
      }
      std::vector<uint8_t> k(pr.k_pool.size()), v(pr.v_pool.size());
      ASSERT_CUDA(cudaMemcpy(k.data(), dp.p.k_pool, k.size(), cudaMemcpyDeviceToHost));
      ASSERT_CUDA(cudaMemcpy(v.data(), dp.p.v_pool, v.size(), cudaMemcpyDeviceToHost));
      EXPECT_EQ(k, pr.k_pool) << "k_new stored at token T-1, nothing else touched";
      EXPECT_EQ(v, pr.v_pool);
      std::vector<int> after(n_counters, -1);
      ASSERT_CUDA(cudaMemcpy(after.data(), counters, n_counters * sizeof(int), cudaMemcpyDeviceToHost));
      EXPECT_EQ(after, std::vector<int>(n_counters, 0)) << splits << " splits";
    }
  }
}

// Pages that a warp step does not fit in (P = 1, or P = 24 with D = 64's
// 16-token steps: the per-slot page lookup) and two head chunks (G = 16) whose
// CTAs both store the fused-append row: output and pools as the twin's.
TEST(DenseDecodeCuda, UnalignedPagesAndTwoHeadChunksWithFusedAppendMatchCpuTwin) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 700;
  for (int d : {64, 128}) {
    for (int page : {1, 24}) {
      for (int g : {4, 16}) {
        DecodeShape s;
        s.head_dim = d;
        s.page_size = page;
        s.num_kv_heads = 2;
        s.num_heads = 2 * g;
        s.dtype = KvDType::kBf16;
        s.lens = {1, 97, 1000};
        const DecodeProblem pr = MakeDecodeProblem(s, seed++);
        const DecodeProblem fused = testing::TakeNewestRows(pr, /*row_pad=*/16);
        const int splits = 5;
        DeviceProblem dp;
        Upload(fused, splits, &dp);
        const size_t n_counters = static_cast<size_t>(pr.batch) * pr.shape.num_heads;
        dp.p.split_counters = static_cast<int*>(dp.Alloc(n_counters * sizeof(int)));
        ASSERT_CUDA(cudaMemset(dp.p.split_counters, 0, n_counters * sizeof(int)));
        const std::vector<double> got = RunGpu(dp);
        const std::string at = "D " + std::to_string(d) + " P " + std::to_string(page) + " G " + std::to_string(g);
        ASSERT_TRUE(AllFinite(got)) << at;
        EXPECT_LT(RelError(got, RunTwin(pr, splits)), GpuBound(s.dtype)) << at;
        std::vector<uint8_t> k(pr.k_pool.size()), v(pr.v_pool.size());
        ASSERT_CUDA(cudaMemcpy(k.data(), dp.p.k_pool, k.size(), cudaMemcpyDeviceToHost));
        ASSERT_CUDA(cudaMemcpy(v.data(), dp.p.v_pool, v.size(), cudaMemcpyDeviceToHost));
        EXPECT_EQ(k, pr.k_pool) << at;
        EXPECT_EQ(v, pr.v_pool) << at;
      }
    }
  }
}

TEST(DenseDecodeCuda, EveryBuiltGroupChunkMatchesCpuTwin) {
  SKIP_WITHOUT_DEVICE();
  for (int g : {2, 5, 6, 7, 8, 12, 16}) {
    DecodeShape s;
    s.num_kv_heads = 2;
    s.num_heads = 2 * g;
    s.dtype = KvDType::kBf16;
    s.lens = {97, 1000};
    const DecodeProblem pr = MakeDecodeProblem(s, 300 + g);
    DeviceProblem dp;
    Upload(pr, 3, &dp);
    const std::vector<double> got = RunGpu(dp);
    ASSERT_TRUE(AllFinite(got)) << "G " << g;
    EXPECT_LT(RelError(got, RunTwin(pr, 3)), GpuBound(s.dtype)) << "G " << g;
  }
}

TEST(DenseDecodeCuda, BatchedEqualsSingleSequenceBitwise) {
  SKIP_WITHOUT_DEVICE();
  DecodeShape s;
  s.num_heads = 32;
  s.num_kv_heads = 8;
  s.dtype = KvDType::kBf16;
  for (int b = 0; b < 17; ++b) s.lens.push_back(std::vector<int>{1, 54, 97, 4097, 300}[b % 5]);
  const DecodeProblem pr = MakeDecodeProblem(s, 31);
  for (int splits : {1, 9}) {
    DeviceProblem all;
    Upload(pr, splits, &all);
    const std::vector<double> batched = RunGpu(all);
    ASSERT_TRUE(AllFinite(batched));
    const size_t row = static_cast<size_t>(s.num_heads) * s.head_dim, qrow = pr.q_stride_b * 2;  // bf16 bytes
    for (int b = 0; b < pr.batch; ++b) {
      DecodeProblem one = pr;  // same pools; this sequence's q, table row and length
      one.batch = 1;
      one.shape.lens = {pr.seq_lens[b]};
      one.seq_lens = {pr.seq_lens[b]};
      one.q.assign(pr.q.begin() + b * qrow, pr.q.begin() + (b + 1) * qrow);
      one.block_table.assign(pr.block_table.begin() + b * pr.max_blocks_per_seq,
                             pr.block_table.begin() + (b + 1) * pr.max_blocks_per_seq);
      DeviceProblem dp;
      Upload(one, splits, &dp);
      const std::vector<double> single = RunGpu(dp);
      ASSERT_EQ(single.size(), row);
      for (size_t i = 0; i < row; ++i) ASSERT_EQ(single[i], batched[b * row + i]) << "b " << b << " i " << i;
    }
  }
}

TEST(DenseDecodeCuda, RerunIntoTheSameOutputIsIdentical) {
  SKIP_WITHOUT_DEVICE();
  DecodeShape s;
  s.dtype = KvDType::kFp32;
  s.lens = {4097, 54};
  const DecodeProblem pr = MakeDecodeProblem(s, 41);
  DeviceProblem dp;
  Upload(pr, 5, &dp);
  const std::vector<double> first = RunGpu(dp);
  ASSERT_TRUE(AllFinite(first));
  EXPECT_EQ(RunGpu(dp), first);
}

TEST(DenseDecodeCuda, StridedQueryMatchesCpuTwin) {
  SKIP_WITHOUT_DEVICE();
  DecodeShape s;
  s.dtype = KvDType::kBf16;
  s.lens = {97, 4097};
  s.q_row_pad = 2 * s.num_kv_heads * s.head_dim;  // q inside a fused [B, (H+2Hkv)*D] qkv row
  const DecodeProblem pr = MakeDecodeProblem(s, 51);
  ASSERT_NE(pr.q_stride_b, static_cast<int64_t>(s.num_heads) * s.head_dim) << "q must be strided";
  DeviceProblem dp;
  Upload(pr, 4, &dp);
  const std::vector<double> got = RunGpu(dp);
  ASSERT_TRUE(AllFinite(got));
  EXPECT_LT(RelError(got, RunTwin(pr, 4)), GpuBound(s.dtype));
}

TEST(DenseDecodeCuda, GraphReplayReadsLiveDeviceSeqLens) {
  SKIP_WITHOUT_DEVICE();
  DecodeShape s;
  s.num_heads = 32;
  s.num_kv_heads = 8;
  s.dtype = KvDType::kBf16;
  s.lens = {4097, 2000, 97};  // capacity; the graph is captured for max_seq_len 4097
  DecodeProblem pr = MakeDecodeProblem(s, 61);
  const int splits = PlanDenseDecodeSplits(pr.batch, s.num_heads, s.num_kv_heads, pr.max_seq_len, NumSms());
  ASSERT_GT(splits, 1) << "the captured launch should merge splits";
  DeviceProblem dp;
  Upload(pr, splits, &dp);
  // The fused merge's counters must come back to zero for every replay.
  const size_t n_counters = static_cast<size_t>(pr.batch) * s.num_heads;
  dp.p.split_counters = static_cast<int*>(dp.Alloc(n_counters * sizeof(int)));
  ASSERT_CUDA(cudaMemset(dp.p.split_counters, 0, n_counters * sizeof(int)));
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const cudaError_t launch = LaunchDenseDecode(dp.p, stream);
  ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_EQ(launch, cudaSuccess) << cudaGetErrorString(launch);
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  // Lengths only shrink or grow within what the pages already hold (NaN past them).
  for (const std::vector<int32_t>& lens : {std::vector<int32_t>{4097, 2000, 97}, {17, 1999, 1},
                                           {4000, 0, 60}, {1, 1, 1}}) {
    ASSERT_CUDA(cudaMemcpyAsync(const_cast<int32_t*>(dp.p.seq_lens), lens.data(), lens.size() * 4,
                                cudaMemcpyHostToDevice, stream));
    ASSERT_CUDA(cudaMemsetAsync(dp.p.out, 0xff, dp.out_bytes, stream));
    ASSERT_CUDA(cudaGraphLaunch(exec, stream));
    ASSERT_CUDA(cudaStreamSynchronize(stream));
    std::vector<uint8_t> host(dp.out_bytes);
    ASSERT_CUDA(cudaMemcpy(host.data(), dp.p.out, dp.out_bytes, cudaMemcpyDeviceToHost));
    const std::vector<double> got = ToDouble(host.data(), pr.OutElems(), s.dtype);
    DecodeProblem now = pr;
    now.seq_lens = lens;
    ASSERT_TRUE(AllFinite(got)) << "lens " << lens[0] << "," << lens[1] << "," << lens[2];
    EXPECT_LT(RelError(got, RunTwin(now, splits)), GpuBound(s.dtype)) << "lens " << lens[0];
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(DenseDecodeCuda, OccupancyMatchesPlannerAssumptionForGroupsUpToFour) {
  SKIP_WITHOUT_DEVICE();
  for (KvDType t : {KvDType::kBf16, KvDType::kFp16, KvDType::kFp32}) {
    for (int d : {64, 128}) {
      for (int g : {1, 3, 4}) {
        int ctas = 0;
        ASSERT_CUDA(DenseDecodeOccupancy(d, t, g, &ctas));
        EXPECT_GE(ctas, kDenseDecodeCtasPerSm) << KvDTypeName(t) << " D " << d << " G " << g;
      }
    }
  }
}

// Runs without a device: validation happens before any CUDA call.
TEST(DenseDecodeCuda, LauncherRejectsUnsupportedOrMisalignedParams) {
  DecodeShape s;
  s.dtype = KvDType::kBf16;
  s.lens = {54};
  const DecodeProblem pr = MakeDecodeProblem(s, 71);
  alignas(16) static uint8_t fake[64];
  DenseDecodeParams p = pr.Params(fake);
  p.head_dim = 96;
  EXPECT_EQ(LaunchDenseDecode(p, nullptr), cudaErrorInvalidValue) << "head_dim 96 is not built";
  p = pr.Params(fake);
  p.num_splits = 3;  // no workspace
  EXPECT_EQ(LaunchDenseDecode(p, nullptr), cudaErrorInvalidValue);
  p = pr.Params(fake + 2);  // out not 16-byte aligned
  p.q = fake;
  p.k_pool = p.v_pool = fake;
  EXPECT_EQ(LaunchDenseDecode(p, nullptr), cudaErrorInvalidValue);
  p = pr.Params(fake);
  p.q = p.k_pool = p.v_pool = fake;
  p.q_stride_h = 132;  // not a multiple of 8 bf16 elements
  EXPECT_EQ(LaunchDenseDecode(p, nullptr), cudaErrorInvalidValue);
  int ctas = 0;
  EXPECT_EQ(DenseDecodeOccupancy(96, KvDType::kBf16, 4, &ctas), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace kvstream
