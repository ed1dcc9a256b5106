// SideStreams (engine/kv/side_streams.h):
//  - CPU: branches run in order on the caller's stream; the first error
//    stops the rest and is returned.
//  - CUDA (skips without a device): each branch sees the caller's earlier
//    work, the caller's later work sees every branch, with more branches
//    than streams; the same fan-out captured in a CUDA graph replays with
//    the same results.
#include "engine/kv/side_streams.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#include <vector>

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace kvstream {
namespace {

TEST(SideStreams, CpuRunsBranchesInOrderAndStopsAtTheFirstError) {
  SideStreams side(4);
  std::vector<int> seen;
  ASSERT_TRUE(side.ForEach(-1, 5, [&](int i) {
                    seen.push_back(i);
                    return absl::OkStatus();
                  }).ok());
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4}));
  seen.clear();
  const absl::Status s = side.ForEach(-1, 5, [&](int i) {
    seen.push_back(i);
    return i == 2 ? absl::InternalError("branch 2") : absl::OkStatus();
  });
  EXPECT_EQ(s.message(), "branch 2");
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH
// Branch i: out[i] = src * (i + 1) + 1, long enough per branch (a big
// tensor) that a missing fork or join would show as a stale read.
void FanOut(SideStreams& side, const at::Tensor& src, std::vector<at::Tensor>& out, int n) {
  ASSERT_TRUE(side.ForEach(src.get_device(), n, [&](int i) {
                    at::mul_out(out[i], src, static_cast<double>(i + 1));
                    out[i].add_(1.0);
                    return absl::OkStatus();
                  }).ok());
}

TEST(SideStreams, CudaBranchesSeeEarlierWorkAndLaterWorkSeesThem) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const c10::cuda::CUDAStream caller = c10::cuda::getStreamFromPool();
  const c10::cuda::CUDAStreamGuard guard(caller);
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  constexpr int kBranches = 11;  // more than the 4 streams: some share one
  SideStreams side(4);
  for (int round = 0; round < 3; ++round) {
    at::Tensor src = at::empty({1 << 22}, opts);
    src.fill_(static_cast<double>(round + 2));  // the caller's earlier work
    std::vector<at::Tensor> out;
    for (int i = 0; i < kBranches; ++i) out.push_back(at::full({1 << 22}, NAN, opts));
    FanOut(side, src, out, kBranches);
    at::Tensor sum = at::zeros({1 << 22}, opts);  // the caller's later work
    for (const at::Tensor& o : out) sum.add_(o);
    double want = 0;
    for (int i = 0; i < kBranches; ++i) want += (round + 2.0) * (i + 1) + 1;
    EXPECT_EQ(sum.min().item<double>(), want) << "round " << round;
    EXPECT_EQ(sum.max().item<double>(), want) << "round " << round;
  }
}

TEST(SideStreams, CudaGraphCaptureReplaysTheFanOut) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const c10::cuda::CUDAStream caller = c10::cuda::getStreamFromPool();
  const c10::cuda::CUDAStreamGuard guard(caller);
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  constexpr int kBranches = 6;
  SideStreams side(4);
  at::Tensor src = at::ones({1 << 20}, opts);
  std::vector<at::Tensor> out;
  for (int i = 0; i < kBranches; ++i) out.push_back(at::empty({1 << 20}, opts));
  FanOut(side, src, out, kBranches);  // eager first: streams and events made outside the capture
  at::cuda::CUDAGraph graph;
  graph.capture_begin();
  FanOut(side, src, out, kBranches);
  graph.capture_end();
  for (int round = 0; round < 2; ++round) {
    src.fill_(static_cast<double>(round + 5));
    for (at::Tensor& o : out) o.fill_(NAN);
    graph.replay();
    for (int i = 0; i < kBranches; ++i) {
      const double want = (round + 5.0) * (i + 1) + 1;
      EXPECT_EQ(out[i].min().item<double>(), want) << "branch " << i << " replay " << round;
      EXPECT_EQ(out[i].max().item<double>(), want) << "branch " << i << " replay " << round;
    }
  }
}
#endif

}  // namespace
}  // namespace kvstream
