// SAM-Gate probe kernels on the GPU vs their CPU twins on fresh random
// inputs with poisoned outputs (sam_gate.md §7, §9 test 3). Skips with a
// reason where no CUDA device is present.
//
// Bounds (§7): Z bit-exact; A rel. err <= 1e-5 per (h, r) row norm; U and W
// rel. err <= 1e-6 (same fmaf order, so normally bit-equal); e, F rel. err
// <= 1e-4 (fp32 tree sums vs the twin's double); f of the probe within 1e-4.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/sam_gate/sam_gate.h"
#include "tests/kernels/sam_gate/sam_cuda_util.h"

namespace kvstream {
namespace {

using testing::Down;
using testing::RandomValues;
using testing::RelErr;
using testing::SamDeviceArena;

template <class... A>
std::string Cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

// A through the softmax twin from random q/k (staging layout [T, H, D]).
struct Operators {
  std::vector<uint8_t> q, k;
  std::vector<float> a;
  SamProbeSoftmaxParams p;
};
Operators MakeOperators(int H, int Hk, int P, int D, KvDType dtype, std::mt19937* rng) {
  Operators o;
  const int T = P + 5;
  o.q = RandomValues(size_t(T) * H * D, dtype, rng);
  o.k = RandomValues(size_t(T) * Hk * D, dtype, rng);
  o.a.assign(size_t(H) * P * P, NAN);
  o.p.q_stride_h = D, o.p.q_stride_p = int64_t(H) * D, o.p.k_stride_h = D, o.p.k_stride_p = int64_t(Hk) * D;
  o.p.num_heads = H, o.p.num_kv_heads = Hk, o.p.head_dim = D, o.p.window = P;
  o.p.scale = 1.0f / std::sqrt(float(D)), o.p.dtype = dtype;
  SamProbeSoftmaxParams hp = o.p;
  const size_t esz = KvDTypeSize(dtype);
  hp.q = o.q.data() + size_t(5) * H * D * esz, hp.k = o.k.data() + size_t(5) * Hk * D * esz, hp.a = o.a.data();
  EXPECT_TRUE(SamProbeSoftmaxRef(hp));
  return o;
}

TEST(SamProbeCuda, SoftmaxMatchesTwin) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(41);
  for (KvDType dtype : {KvDType::kBf16, KvDType::kFp32, KvDType::kFp16}) {
    for (int D : {64, 128}) {
      for (int G : {1, 3, 4}) {
        for (int P : {8, 64, 97, 512}) {
          const std::string what = Cat(KvDTypeName(dtype), " D", D, " G", G, " P", P);
          const int Hk = 2, H = Hk * G;
          Operators o = MakeOperators(H, Hk, P, D, dtype, &rng);
          SamDeviceArena arena;
          const size_t esz = KvDTypeSize(dtype);
          SamProbeSoftmaxParams dp = o.p;
          dp.q = arena.Up(o.q) + size_t(5) * H * D * esz;
          dp.k = arena.Up(o.k) + size_t(5) * Hk * D * esz;
          dp.a = arena.Up(std::vector<float>(o.a.size(), NAN));
          ASSERT_CUDA(LaunchSamProbeSoftmax(dp, nullptr));
          ASSERT_CUDA(cudaDeviceSynchronize());
          const std::vector<float> g = Down(dp.a, o.a.size());
          for (int row = 0; row < H * P; ++row) {
            const std::vector<float> gr(g.begin() + size_t(row) * P, g.begin() + size_t(row + 1) * P);
            const std::vector<float> hr(o.a.begin() + size_t(row) * P, o.a.begin() + size_t(row + 1) * P);
            ASSERT_LE(RelErr(gr, hr), 1e-5) << what << " row " << row;
          }
        }
      }
    }
  }
}

TEST(SamProbeCuda, ProbeChainMatchesTwinWithTheSameSeed) {
  SKIP_WITHOUT_DEVICE();
  std::mt19937 rng(42);
  for (int H : {1, 8, 32}) {
    for (int P : {8, 64, 97}) {
      for (int K : {1, 8, 64}) {
        if (int64_t(H) * H * P * K > (4 << 20)) continue;  // keeps the twin's W under a second
        const std::string what = Cat("H", H, " P", P, " K", K);
        Operators o = MakeOperators(H, H == 1 ? 1 : H / 4, P, 64, KvDType::kFp32, &rng);
        const uint64_t seed = rng();
        const int layer = static_cast<int>(rng() % 80);
        // Twin chain.
        std::vector<float> z(size_t(P) * K, NAN), u(size_t(H) * P * K, NAN), e(H, NAN), w(size_t(H) * H * P * K, NAN),
            f(size_t(H) * H, NAN), fe(f), ee(e);
        ASSERT_TRUE(SamRademacherRef({z.data(), seed, layer, P, K}));
        ASSERT_TRUE(SamProbeProductsRef({o.a.data(), z.data(), u.data(), e.data(), w.data(), H, P, K}));
        ASSERT_TRUE(SamProbePairsRef({w.data(), f.data(), H, P, K}));
        ASSERT_TRUE(SamProbeExactRef({o.a.data(), fe.data(), ee.data(), H, P}));
        // GPU chain on poisoned buffers.
        SamDeviceArena arena;
        float* da = arena.Up(o.a);
        float* dz = arena.Up(std::vector<float>(z.size(), NAN));
        float* du = arena.Up(std::vector<float>(u.size(), NAN));
        float* de = arena.Up(std::vector<float>(e.size(), NAN));
        float* dw = arena.Up(std::vector<float>(w.size(), NAN));
        float* df = arena.Up(std::vector<float>(f.size(), NAN));
        float* dfe = arena.Up(std::vector<float>(f.size(), NAN));
        float* dee = arena.Up(std::vector<float>(e.size(), NAN));
        ASSERT_CUDA(LaunchSamRademacher({dz, seed, layer, P, K}, nullptr));
        ASSERT_CUDA(LaunchSamProbeProducts({da, dz, du, de, dw, H, P, K}, nullptr));
        ASSERT_CUDA(LaunchSamProbePairs({dw, df, H, P, K}, nullptr));
        ASSERT_CUDA(LaunchSamProbeExact({da, dfe, dee, H, P}, nullptr));
        ASSERT_CUDA(cudaDeviceSynchronize());
        ASSERT_EQ(Down(dz, z.size()), z) << what << ": Z bit-exact (C5)";
        EXPECT_LE(RelErr(Down(du, u.size()), u), 1e-6) << what;
        EXPECT_LE(RelErr(Down(dw, w.size()), w), 1e-6) << what;
        EXPECT_LE(RelErr(Down(de, e.size()), e), 1e-4) << what;
        EXPECT_LE(RelErr(Down(df, f.size()), f), 1e-4) << what;
        EXPECT_LE(RelErr(Down(dee, ee.size()), ee), 1e-4) << what;
        EXPECT_LE(RelErr(Down(dfe, fe.size()), fe), 1e-4) << what;
        // f over all pairs (no harmonic heads) within 1e-4 (§9 test 3).
        const std::vector<float> gf = Down(df, f.size());
        double f_gpu = 0.0, f_cpu = 0.0;
        for (size_t i = 0; i < f.size(); ++i) f_gpu += gf[i], f_cpu += f[i];
        EXPECT_NEAR(f_gpu, f_cpu, 1e-4 * (1.0 + std::fabs(f_cpu))) << what;
      }
    }
  }
}

}  // namespace
}  // namespace kvstream
