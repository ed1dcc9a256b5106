// The tuned cublasLt projection (engine/model/tuned_linear.h) on the GPU;
// skips without a CUDA device.
//  - Its output equals x · wᵀ computed in fp32 (relative error ≤ 1e-2, the
//    bf16/fp16 rounding of y) for decode row counts 3..64, bf16 and fp16,
//    into outputs poisoned with NaN, on the plan's first (timing) call and
//    on a later one.
//  - Captured in a CUDA graph after an eager first call, a replay on new
//    inputs gives their product; under capture a shape with no plan yet is
//    refused (the caller's at::linear is captured instead).
//  - Shapes it does not take (≤ 2 or > 64 rows, a bias, fp32, misaligned
//    rows) give nullopt.
#include "engine/model/tuned_linear.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace kvstream {
namespace {

#define REQUIRE_CUDA()                                     \
  do {                                                     \
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

double RelError(const at::Tensor& y, const at::Tensor& ref) {
  const at::Tensor yf = y.to(at::kFloat).cpu(), rf = ref.to(at::kFloat).cpu();
  if (!yf.isfinite().all().item<bool>()) return INFINITY;
  return (yf - rf).abs().max().item<double>() / std::max(rf.abs().max().item<double>(), 1e-30);
}

at::Tensor Reference(const at::Tensor& x, const at::Tensor& w) {
  return at::matmul(x.to(at::kFloat), w.to(at::kFloat).t());
}

TEST(TunedLinearCuda, EqualsFp32ProductIntoPoisonedOutputs) {
  REQUIRE_CUDA();
  TunedLinearPreferCublasLtForTesting(true);  // run cublasLt even where at::linear is faster
  at::manual_seed(11);
  for (const auto dtype : {at::kBFloat16, at::kHalf}) {
    const auto opts = at::TensorOptions().device(at::kCUDA).dtype(dtype);
    for (const auto& [N, K] : {std::pair<int64_t, int64_t>{1024, 512}, {776, 2048}}) {
      for (const int64_t M : {3, 4, 8, 16, 64}) {
        const at::Tensor w = at::randn({N, K}, opts) / std::sqrt(static_cast<double>(K));
        for (int call = 0; call < 2; ++call) {  // call 0 tunes, call 1 uses the plan
          const at::Tensor x = at::randn({M, K}, opts);
          at::Tensor y = at::full({M, N}, NAN, opts);
          ASSERT_TRUE(TunedLinearInto(x, w, y)) << "M=" << M << " N=" << N << " K=" << K;
          EXPECT_LE(RelError(y, Reference(x, w)), 1e-2) << "M=" << M << " N=" << N << " K=" << K << " call " << call;
        }
      }
    }
  }
  TunedLinearPreferCublasLtForTesting(false);
}

TEST(TunedLinearCuda, StridedRowsAndTheDefaultChoiceAreExactProducts) {
  REQUIRE_CUDA();
  at::manual_seed(12);
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  // Rows of a wider buffer (as the attention output or a fused qkv slice).
  const at::Tensor wide = at::randn({8, 1536}, opts);
  const at::Tensor x = wide.narrow(1, 0, 1024);
  const at::Tensor w = at::randn({640, 1024}, opts) / 32.0;
  // Without the test preference: cublasLt or at::linear, whichever was faster.
  std::optional<at::Tensor> y = TunedLinear(x, w, at::Tensor());
  const at::Tensor out = y.has_value() ? *y : at::linear(x, w);
  EXPECT_LE(RelError(out, Reference(x, w)), 1e-2);
}

#ifdef KVSTREAM_HAVE_CUDA_TORCH
TEST(TunedLinearCuda, GraphReplayOnNewInputsGivesTheirProduct) {
  REQUIRE_CUDA();
  TunedLinearPreferCublasLtForTesting(true);
  at::manual_seed(13);
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const int64_t M = 8, N = 1536, K = 1024;
  const at::Tensor w = at::randn({N, K}, opts) / 32.0;
  at::Tensor x = at::randn({M, K}, opts);
  at::Tensor y = at::empty({M, N}, opts);
  const c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();
  {
    const c10::cuda::CUDAStreamGuard guard(stream);
    ASSERT_TRUE(TunedLinearInto(x, w, y));  // eager: makes the plan and this stream's workspace
    at::cuda::CUDAGraph graph;
    graph.capture_begin();
    const bool captured = TunedLinearInto(x, w, y);
    // A shape never seen eagerly cannot be timed under capture.
    const at::Tensor x5 = at::empty({5, K}, opts);
    at::Tensor y5 = at::empty({5, N}, opts);
    const bool untuned = TunedLinearInto(x5, w, y5);
    graph.capture_end();
    ASSERT_TRUE(captured);
    EXPECT_FALSE(untuned);
    for (int round = 0; round < 2; ++round) {
      x.copy_(at::randn({M, K}, opts));
      y.fill_(NAN);
      graph.replay();
      stream.synchronize();
      EXPECT_LE(RelError(y, Reference(x, w)), 1e-2) << "replay " << round;
    }
  }
  TunedLinearPreferCublasLtForTesting(false);
}
#endif

TEST(TunedLinearCuda, RefusesShapesItDoesNotTake) {
  REQUIRE_CUDA();
  const auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const at::Tensor w = at::randn({256, 512}, opts);
  EXPECT_FALSE(TunedLinear(at::randn({2, 512}, opts), w, at::Tensor()).has_value()) << "2 rows: the GEMV's";
  EXPECT_FALSE(TunedLinear(at::randn({65, 512}, opts), w, at::Tensor()).has_value()) << "65 rows: cuBLAS's";
  EXPECT_FALSE(TunedLinear(at::randn({8, 512}, opts), w, at::randn({256}, opts)).has_value()) << "bias";
  EXPECT_FALSE(TunedLinear(at::randn({8, 512}, opts.dtype(at::kFloat)), w.to(at::kFloat), at::Tensor()).has_value())
      << "fp32";
  const at::Tensor wide = at::randn({8, 520}, opts);
  EXPECT_FALSE(TunedLinear(wide.narrow(1, 8, 512), w, at::Tensor()).has_value()) << "rows at a 16-byte offset";
  EXPECT_FALSE(TunedLinear(at::randn({8, 512}), w.cpu(), at::Tensor()).has_value()) << "CPU tensors";
}

}  // namespace
}  // namespace kvstream
