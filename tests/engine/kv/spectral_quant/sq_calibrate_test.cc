// Calibration on synthetic data (spectral_quant.md §9 test 5): Gaussian
// vectors in a random orthonormal basis with lambda_i = 2^(-i/4). The fp64
// second moment + eigh recovers lambda within 3% and the top-8 basis
// (|cos| > 0.99); quantizing in the recovered basis with the plan's widths
// gives a per-dimension MSE / s^2 within 10% of the unit Lloyd-Max MSE of
// its width. Also: the token cap per layer and the corpus reader.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>

#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_device_plan.h"
#include "tests/test_paths.h"

namespace kvstream {
namespace {

constexpr int64_t kD = 64;

struct Synthetic {
  at::Tensor basis;   // [D, D] f64 orthonormal, column i = direction of lambda_i
  at::Tensor lambda;  // [D] f64
  at::Tensor x;       // [n, D] f32
};

Synthetic Make(int64_t n, uint64_t seed) {
  at::manual_seed(seed);
  Synthetic s;
  s.basis = std::get<0>(at::linalg_qr(at::randn({kD, kD}, at::kDouble)));
  s.lambda = at::pow(2.0, -at::arange(kD, at::kDouble) / 4.0);
  s.x = (at::randn({n, kD}, at::kDouble) * s.lambda.sqrt()).matmul(s.basis.t()).to(at::kFloat);
  return s;
}

TEST(SqCalibrate, RecoversSpectrumAndBasis) {
  const Synthetic s = Make(40000, 7);
  SqCovariance cov(1, 1, kD);
  at::Tensor x = s.x.unsqueeze(0);  // [Hkv=1, n, D]
  for (int64_t i = 0; i < 40000; i += 4000) cov.Add(0, x.narrow(1, i, 4000), x.narrow(1, i, 4000));
  absl::StatusOr<SqProfile> p = cov.Finish("default", 0);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->n_tokens, 40000u);
  const SqSpectrum& k = p->at(0, 0, 0);
  double worst = 0.0;
  for (int64_t i = 0; i < kD; ++i) {
    const double want = s.lambda[i].item<double>();
    worst = std::max(worst, std::abs(k.lambda[i] - want) / want);
  }
  EXPECT_LT(worst, 0.03);
  RecordProperty("lambda_max_rel_err", std::to_string(worst));
  for (int64_t c = 0; c < 8; ++c) {
    double dot = 0.0;
    for (int64_t r = 0; r < kD; ++r) dot += k.vecs[c * kD + r] * s.basis[r][c].item<double>();
    EXPECT_GT(std::abs(dot), 0.99) << "eigenvector " << c;
  }
}

TEST(SqCalibrate, QuantizedMseMatchesUnitTables) {
  const Synthetic s = Make(40000, 8);
  SqCovariance cov(1, 1, kD);
  cov.Add(0, s.x.unsqueeze(0), s.x.unsqueeze(0));
  absl::StatusOr<SqProfile> p = cov.Finish("default", 0);
  ASSERT_TRUE(p.ok()) << p.status();
  SpectralQuantConfig c;  // defaults: water-fill on
  std::shared_ptr<const SqPlan> plan = SqBuildPlan(c, *p);
  const SqLayerDevice dev = SqBuildLayerDevice(*plan, *p, 0, c10::Device(c10::kCPU));
  const at::Tensor tables = SqUnitTables(c10::Device(c10::kCPU));
  const int64_t n = 20000;
  at::Tensor z = s.x.narrow(0, 0, n).matmul(dev.vk[0]).contiguous();  // [n, 1, D] as [T, Hkv, D]
  at::Tensor rec = at::zeros({n, 1, dev.words_k}, at::kInt);
  SqQuantizePackParams qp;
  qp.z = z.const_data_ptr<float>();
  qp.plan = dev.KView();
  qp.tables = tables.const_data_ptr<float>();
  qp.records = reinterpret_cast<uint32_t*>(rec.mutable_data_ptr<int32_t>());
  qp.num_tokens = static_cast<int>(n);
  qp.num_kv_heads = 1;
  qp.head_dim = kD;
  ASSERT_TRUE(SqQuantizePackRef(qp));
  at::Tensor zhat = at::empty({n, kD}, at::kFloat);
  SqDequantParams dp;
  dp.records = qp.records;
  dp.plan = qp.plan;
  dp.tables = qp.tables;
  dp.zhat = zhat.mutable_data_ptr<float>();
  dp.num_tokens = static_cast<int>(n);
  dp.num_kv_heads = 1;
  dp.head_dim = kD;
  ASSERT_TRUE(SqDequantRef(dp));
  at::Tensor mse = (zhat - z).pow(2).mean(0).to(at::kDouble);  // [D]
  const SqTypePlan& kp = plan->layers[0].k[0];
  int checked = 0;
  for (int64_t i = 0; i < kD; ++i) {
    // Dims whose sigma is floored (lambda < 1/D, §4.2.3) are not unit-variance.
    if (p->at(0, 0, 0).lambda[i] < 1.0 / kD) continue;
    const int w = kp.width[i];
    double cent[256];
    SqLloydMaxUnit(w, cent);
    const double unit = SqUnitCodebookMse(cent, w);
    const double got = mse[i].item<double>() / (static_cast<double>(kp.scale[i]) * kp.scale[i]);
    EXPECT_NEAR(got / unit, 1.0, 0.10) << "dim " << i << " width " << w;
    ++checked;
  }
  EXPECT_GE(checked, 16);
}

TEST(SqCalibrate, StopsAtTheTokenCapPerLayer) {
  SqCovariance cov(2, 1, 8, 100);
  at::Tensor x = at::randn({1, 70, 8});
  EXPECT_EQ(cov.Add(0, x, x), 70);
  EXPECT_EQ(cov.Add(0, x, x), 30);
  EXPECT_EQ(cov.Add(0, x, x), 0);
  EXPECT_FALSE(cov.Full());
  EXPECT_EQ(cov.Add(1, x, x), 70);
  EXPECT_EQ(cov.Add(1, x, x), 30);
  EXPECT_TRUE(cov.Full());
  SqCovariance empty(1, 1, 8);
  EXPECT_FALSE(empty.Finish("x", 0).ok());
}

TEST(SqCalibrate, ReadsTheShippedCorpus) {
  absl::StatusOr<std::vector<std::string>> t =
      SqReadCorpus(testing::SourceDir() + "/data/calibration/corpus.txt");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_GE(t->size(), 12u);
  int paragraphs = 0;
  for (const std::string& s : *t) {
    EXPECT_EQ(s.find('#'), std::string::npos);
    EXPECT_EQ(s.find("---"), std::string::npos);
    paragraphs += 1;
    for (size_t at = s.find("\n\n"); at != std::string::npos; at = s.find("\n\n", at + 2)) ++paragraphs;
  }
  EXPECT_GE(paragraphs, 64);
  EXPECT_FALSE(SqReadCorpus("/nonexistent/corpus.txt").ok());
}

}  // namespace
}  // namespace kvstream
