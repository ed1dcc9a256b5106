// Fused Llama-block ops on the GPU vs their CPU twins (fresh random inputs,
// NaN-poisoned outputs). bf16: both round at the same points; only the fp32
// summation order of the norm statistics and sincosf/exp ulps differ, so
// outputs agree to within a bf16 ulp in norm. Skips without a CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/model/fused_ops.h"
#include "tests/kernels/cuda_test_util.h"

namespace kvstream {
namespace {

std::vector<uint16_t> RandomBf16(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = FloatToBf16Bits(g(rng));
  return v;
}

template <class T>
T* ToDevice(const std::vector<T>& h) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), h.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

template <class T>
std::vector<T> ToHost(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

// ||gpu - twin|| / ||twin|| below a bf16 ulp (2^-8), and every element written.
void ExpectBf16Close(const std::vector<uint16_t>& gpu, const std::vector<uint16_t>& twin, const std::string& what) {
  ASSERT_EQ(gpu.size(), twin.size());
  double err = 0, norm = 0;
  size_t differ = 0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    const float a = Bf16BitsToFloat(gpu[i]), b = Bf16BitsToFloat(twin[i]);
    ASSERT_TRUE(std::isfinite(a)) << what << ": element " << i << " not written";
    err += double(a - b) * (a - b);
    norm += double(b) * b;
    differ += gpu[i] != twin[i];
  }
  EXPECT_LT(std::sqrt(err / norm), 4e-3) << what << " (" << differ << " of " << gpu.size() << " differ)";
}

TEST(FusedOpsCuda, RmsNormWithResidualMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  for (int E : {576, 4096}) {
    const int N = 7;
    auto x = RandomBf16(N * E, 11 + E), res = RandomBf16(N * E, 12 + E), w = RandomBf16(E, 13 + E, 0.3f);
    std::vector<uint16_t> out(N * E, 0x7fc0), res_twin = res;
    uint16_t *dx = ToDevice(x), *dres = ToDevice(res), *dw = ToDevice(w), *dout = ToDevice(out);
    RmsNormParams p{dx, dres, dw, dout, 0, N, E, 1e-5f, KvDType::kBf16};
    ASSERT_EQ(LaunchRmsNorm(p, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    RmsNormParams h{x.data(), res_twin.data(), w.data(), out.data(), 0, N, E, 1e-5f, KvDType::kBf16};
    ASSERT_TRUE(RmsNormRef(h));
    EXPECT_EQ(ToHost(dres, res.size()), res_twin) << "residual add is exact";
    ExpectBf16Close(ToHost(dout, out.size()), out, "rmsnorm E=" + std::to_string(E));
    for (void* d : {(void*)dx, (void*)dres, (void*)dw, (void*)dout}) cudaFree(d);
  }
}

TEST(FusedOpsCuda, SiluMulMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  const int N = 9, I = 1536;
  auto gu = RandomBf16(N * 2 * I, 21, 2.f);
  std::vector<uint16_t> out(N * I, 0x7fc0);
  uint16_t *dgu = ToDevice(gu), *dout = ToDevice(out);
  ASSERT_EQ(LaunchSiluMul(SiluMulParams{dgu, dout, N, I, KvDType::kBf16}, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(SiluMulRef(SiluMulParams{gu.data(), out.data(), N, I, KvDType::kBf16}));
  ExpectBf16Close(ToHost(dout, out.size()), out, "silu_mul");
  cudaFree(dgu);
  cudaFree(dout);
}

TEST(FusedOpsCuda, RopeMatchesTwinOnStridedQkv) {
  SKIP_WITHOUT_DEVICE();
  const int N = 6, H = 32, Hkv = 8, D = 128;
  const int64_t stride = (H + 2 * Hkv) * D + 64;  // padded rows: the stride is honoured
  auto qkv = RandomBf16(N * stride, 31);
  std::vector<uint16_t> twin = qkv;
  std::vector<int64_t> pos = {0, 1, 17, 1000, 8191, 131071};
  std::vector<float> inv(D / 2);
  for (int i = 0; i < D / 2; ++i) inv[i] = std::pow(500000.f, -2.f * i / D);
  uint16_t* dq = ToDevice(qkv);
  int64_t* dpos = ToDevice(pos);
  float* dinv = ToDevice(inv);
  ASSERT_EQ(LaunchRope(RopeParams{dq, dpos, dinv, stride, N, H, Hkv, D, KvDType::kBf16}, nullptr), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ASSERT_TRUE(RopeRef(RopeParams{twin.data(), pos.data(), inv.data(), stride, N, H, Hkv, D, KvDType::kBf16}));
  ExpectBf16Close(ToHost(dq, qkv.size()), twin, "rope");
  cudaFree(dq);
  cudaFree(dpos);
  cudaFree(dinv);
}

}  // namespace
}  // namespace kvstream
