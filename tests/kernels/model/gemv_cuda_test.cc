// GEMV on the GPU vs its CPU twin: fresh random inputs, NaN-poisoned outputs,
// every M in 1..8, shapes with tail rows and K tails, strides and bias. Both
// accumulate in fp32 (different order) and round once, so outputs agree to a
// bf16 ulp in norm. Skips without a CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/model/gemv.h"
#include "tests/kernels/cuda_test_util.h"

namespace kvstream {
namespace {

std::vector<uint16_t> RandomBits(size_t n, std::mt19937& rng, bool bf16) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = bf16 ? FloatToBf16Bits(g(rng)) : FloatToHalfBits(g(rng));
  return v;
}

uint16_t* Upload(const std::vector<uint16_t>& h) {
  uint16_t* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), h.size() * 2), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

struct Case {
  int M, N, K;
  bool bias, bf16;
  int x_pad, y_pad;
};

void RunCase(const Case& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t xs = c.K + c.x_pad, ys = c.N + c.y_pad;
  auto x = RandomBits(static_cast<size_t>(c.M * xs), rng, c.bf16);
  auto w = RandomBits(static_cast<size_t>(c.N) * c.K, rng, c.bf16);
  auto b = RandomBits(static_cast<size_t>(c.N), rng, c.bf16);
  const uint16_t nan = c.bf16 ? 0x7fc0 : 0x7e00;
  std::vector<uint16_t> y_twin(static_cast<size_t>(c.M * ys), nan);
  GemvParams p;
  p.rows = c.M; p.out_features = c.N; p.in_features = c.K; p.x_stride = xs; p.y_stride = ys;
  p.dtype = c.bf16 ? KvDType::kBf16 : KvDType::kFp16;
  p.x = x.data(); p.w = w.data(); p.bias = c.bias ? b.data() : nullptr; p.y = y_twin.data();
  ASSERT_TRUE(GemvRef(p));

  uint16_t *dx = Upload(x), *dw = Upload(w), *db = Upload(b);
  uint16_t* dy = Upload(std::vector<uint16_t>(y_twin.size(), nan));
  p.x = dx; p.w = dw; p.bias = c.bias ? db : nullptr; p.y = dy;
  ASSERT_EQ(LaunchGemv(p, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint16_t> y(y_twin.size());
  ASSERT_EQ(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  auto f = [&](uint16_t v) { return c.bf16 ? Bf16BitsToFloat(v) : HalfBitsToFloat(v); };
  double err = 0, norm = 0;
  for (int m = 0; m < c.M; ++m) {
    for (int64_t n = 0; n < ys; ++n) {
      const size_t i = static_cast<size_t>(m * ys + n);
      if (n >= c.N) {
        ASSERT_EQ(y[i], nan) << "wrote past out_features at m " << m << " n " << n;
        continue;
      }
      ASSERT_TRUE(std::isfinite(f(y[i]))) << "m " << m << " n " << n << " not written";
      err += std::pow(double(f(y[i])) - f(y_twin[i]), 2);
      norm += std::pow(double(f(y_twin[i])), 2);
    }
  }
  EXPECT_LT(std::sqrt(err / norm), c.bf16 ? 4e-3 : 1e-3)
      << "M " << c.M << " N " << c.N << " K " << c.K << " bias " << c.bias;
  cudaFree(dx); cudaFree(dw); cudaFree(db); cudaFree(dy);
}

TEST(GemvCuda, EveryRowCountMatchesTwinWithTailsStridesAndBias) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 100;
  for (int M = 1; M <= kGemvMaxRows; ++M) {
    RunCase({M, 67, 1032, M % 2 == 0, true, 0, 0}, seed++);      // tail rows; K not a multiple of 256
    RunCase({M, 576, 576, true, true, 8, 3}, seed++);           // SmolLM2 shapes, strided
  }
  RunCase({1, 6144, 4096, false, true, 0, 0}, seed++);          // Llama-3-8B qkv
  RunCase({8, 4096, 14336, false, true, 0, 0}, seed++);         // Llama-3-8B down
  RunCase({4, 1000, 264, true, false, 0, 0}, seed++);           // fp16
}

// Fused add + RMSNorm prologue vs its twin: y within a bf16 ulp in norm
// (rsqrtf vs 1/sqrt may move x' by an ulp), residual_out bit-exact (one
// rounded fp32 add on both sides), x never written.
TEST(GemvCuda, NormPrologueMatchesTwinAndWritesResidualOnce) {
  SKIP_WITHOUT_DEVICE();
  uint32_t seed = 900;
  for (int M : {1, 2}) {
    for (auto [N, K] : {std::pair{6144, 4096}, std::pair{100, 576}}) {
      std::mt19937 rng(seed++);
      auto x = RandomBits(static_cast<size_t>(M) * K, rng, true);
      auto d = RandomBits(static_cast<size_t>(M) * K, rng, true);
      auto wn = RandomBits(K, rng, true);
      auto w = RandomBits(static_cast<size_t>(N) * K, rng, true);
      const uint16_t nan = 0x7fc0;
      std::vector<uint16_t> y_twin(static_cast<size_t>(M) * N, nan), r_twin(x.size(), nan);
      GemvParams p;
      p.rows = M; p.out_features = N; p.in_features = K; p.eps = 1e-5f;
      p.x = x.data(); p.w = w.data(); p.y = y_twin.data(); p.norm_weight = wn.data();
      p.delta = d.data(); p.residual_out = r_twin.data();
      ASSERT_TRUE(GemvRef(p));
      uint16_t *dx = Upload(x), *dd = Upload(d), *dwn = Upload(wn), *dw = Upload(w);
      uint16_t* dy = Upload(std::vector<uint16_t>(y_twin.size(), nan));
      uint16_t* dr = Upload(std::vector<uint16_t>(r_twin.size(), nan));
      p.x = dx; p.w = dw; p.y = dy; p.norm_weight = dwn; p.delta = dd; p.residual_out = dr;
      ASSERT_EQ(LaunchGemv(p, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<uint16_t> y(y_twin.size()), r(r_twin.size()), x_after(x.size());
      ASSERT_EQ(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(r.data(), dr, r.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(x_after.data(), dx, x.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_EQ(r, r_twin) << "residual_out, M " << M << " K " << K;
      EXPECT_EQ(x_after, x) << "x was written";
      double err = 0, norm = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_TRUE(std::isfinite(Bf16BitsToFloat(y[i]))) << "y[" << i << "] not written";
        err += std::pow(double(Bf16BitsToFloat(y[i])) - Bf16BitsToFloat(y_twin[i]), 2);
        norm += std::pow(double(Bf16BitsToFloat(y_twin[i])), 2);
      }
      EXPECT_LT(std::sqrt(err / norm), 4e-3) << "M " << M << " N " << N << " K " << K;
      cudaFree(dx); cudaFree(dd); cudaFree(dwn); cudaFree(dw); cudaFree(dy); cudaFree(dr);
    }
  }
}

// Paired epilogues (SwiGLU after gate_up, RoPE after qkv), with and without
// the norm prologue, vs the twin: every output written (NaN-poisoned), none
// past the output columns, values within a bf16 ulp in norm (the twin's
// outputs go through the same rounding points; fp32 sums differ in order).
TEST(GemvCuda, EpiloguesMatchTwinAndWriteEveryOutputOnce) {
  SKIP_WITHOUT_DEVICE();
  struct EpiCase {
    GemvEpilogue epi;
    int N, K, D, rope_heads;
    bool norm, bias;
  };
  const EpiCase cases[] = {
      {GemvEpilogue::kSiluMul, 2 * 14336, 4096, 0, 0, true, false},   // Llama-3-8B gate_up
      {GemvEpilogue::kSiluMul, 2 * 1536, 576, 0, 0, false, false},    // SmolLM2 gate_up
      {GemvEpilogue::kRope, 6144, 4096, 128, 40, true, false},        // Llama-3-8B qkv: 32 q + 8 k heads
      {GemvEpilogue::kRope, 960, 576, 64, 12, true, false},           // SmolLM2 qkv: 9 q + 3 k heads
      {GemvEpilogue::kRope, 4608, 3584, 128, 32, false, true},        // Qwen2.5-7B qkv (bias): 28 q + 4 k heads
  };
  uint32_t seed = 1300;
  for (const EpiCase& c : cases) {
    for (int M : {1, 2}) {
      std::mt19937 rng(seed++);
      const int cols = c.epi == GemvEpilogue::kSiluMul ? c.N / 2 : c.N;
      auto x = RandomBits(static_cast<size_t>(M) * c.K, rng, true);
      auto d = RandomBits(static_cast<size_t>(M) * c.K, rng, true);
      auto wn = RandomBits(c.K, rng, true);
      auto w = RandomBits(static_cast<size_t>(c.N) * c.K, rng, true);
      auto b = RandomBits(static_cast<size_t>(c.N), rng, true);
      std::vector<int64_t> pos = {5, 70000};
      std::vector<float> inv_freq(static_cast<size_t>(std::max(c.D / 2, 1)));
      for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(500000.f, -2.f * i / std::max(c.D, 2));
      const uint16_t nan = 0x7fc0;
      const int ys = cols + 3;
      std::vector<uint16_t> y_twin(static_cast<size_t>(M) * ys, nan), r_twin(x.size(), nan);
      GemvParams p;
      p.rows = M; p.out_features = c.N; p.in_features = c.K; p.y_stride = ys; p.eps = 1e-5f;
      p.epilogue = c.epi; p.head_dim = c.D; p.rope_heads = c.rope_heads;
      p.positions = pos.data(); p.inv_freq = inv_freq.data();
      p.x = x.data(); p.w = w.data(); p.y = y_twin.data(); p.bias = c.bias ? b.data() : nullptr;
      if (c.norm) { p.norm_weight = wn.data(); p.delta = d.data(); p.residual_out = r_twin.data(); }
      ASSERT_TRUE(GemvRef(p));
      uint16_t *dx = Upload(x), *dd = Upload(d), *dwn = Upload(wn), *dw = Upload(w), *db = Upload(b);
      uint16_t* dy = Upload(std::vector<uint16_t>(y_twin.size(), nan));
      uint16_t* dr = Upload(std::vector<uint16_t>(r_twin.size(), nan));
      int64_t* dpos = nullptr;
      float* dfreq = nullptr;
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dpos), pos.size() * 8), cudaSuccess);
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dfreq), inv_freq.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dpos, pos.data(), pos.size() * 8, cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dfreq, inv_freq.data(), inv_freq.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
      p.x = dx; p.w = dw; p.y = dy; p.bias = c.bias ? db : nullptr; p.positions = dpos; p.inv_freq = dfreq;
      if (c.norm) { p.norm_weight = dwn; p.delta = dd; p.residual_out = dr; }
      ASSERT_EQ(LaunchGemv(p, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<uint16_t> y(y_twin.size()), r(r_twin.size());
      ASSERT_EQ(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(r.data(), dr, r.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
      if (c.norm) {
        EXPECT_EQ(r, r_twin) << "residual_out";
      }
      double err = 0, norm = 0;
      for (int m = 0; m < M; ++m) {
        for (int n = 0; n < ys; ++n) {
          const uint16_t v = y[static_cast<size_t>(m) * ys + n];
          if (n >= cols) {
            ASSERT_EQ(v, nan) << "wrote past the output columns at m " << m << " n " << n;
            continue;
          }
          ASSERT_TRUE(std::isfinite(Bf16BitsToFloat(v))) << "m " << m << " n " << n << " not written";
          const float t = Bf16BitsToFloat(y_twin[static_cast<size_t>(m) * ys + n]);
          err += std::pow(double(Bf16BitsToFloat(v)) - t, 2);
          norm += std::pow(double(t), 2);
        }
      }
      EXPECT_LT(std::sqrt(err / norm), 4e-3)
          << (c.epi == GemvEpilogue::kRope ? "rope" : "silu") << " M " << M << " N " << c.N << " K " << c.K;
      cudaFree(dx); cudaFree(dd); cudaFree(dwn); cudaFree(dw); cudaFree(db); cudaFree(dy); cudaFree(dr);
      cudaFree(dpos); cudaFree(dfreq);
    }
  }
}

TEST(GemvCuda, RejectsMisalignedAndInvalid) {
  SKIP_WITHOUT_DEVICE();
  std::vector<uint16_t> h(4096, 0);
  uint16_t* d = Upload(h);
  GemvParams p;
  p.x = d + 1; p.w = d; p.y = d + 2048; p.rows = 1; p.out_features = 8; p.in_features = 64;
  EXPECT_EQ(LaunchGemv(p, nullptr), cudaErrorMisalignedAddress);
  p.x = d; p.rows = 0;
  EXPECT_EQ(LaunchGemv(p, nullptr), cudaErrorInvalidValue);
  cudaFree(d);
}

}  // namespace
}  // namespace kvstream
