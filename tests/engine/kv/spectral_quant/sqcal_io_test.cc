// The .sqcal format (spectral_quant.md §6.2, §9 test 9): bit-exact round
// trip, V orthonormal, lambda descending, the eigenvector sign convention
// (§6.3), and malformed files (every truncated prefix, corrupted counts,
// bad values) giving an error that names the bad value, never a crash.
// Version 2 adds per (l, h, t) the mean and the centred spectrum (issue 11);
// a version 1 file is refused as stale (FailedPrecondition, recalibrate).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>

#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_profile.h"

namespace kvstream {
namespace {

// A profile from real eigendecompositions of random covariances.
SqProfile RandomProfile(int L, int H, int D, uint64_t seed) {
  at::manual_seed(seed);
  SqCovariance cov(L, H, D);
  for (int l = 0; l < L; ++l) {
    at::Tensor k = at::randn({H, 64, D}) * at::linspace(3.0, 0.1, D);
    at::Tensor v = at::randn({H, 64, D}) + 0.5;  // a mean for the centred spectra
    cov.Add(l, k, v);
  }
  absl::StatusOr<SqProfile> p = cov.Finish("default", 0x1234abcdULL);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

void Patch32(std::string& b, size_t off, uint32_t v) { std::memcpy(b.data() + off, &v, 4); }

TEST(Sqcal, RoundTripIsBitExact) {
  const SqProfile p = RandomProfile(3, 2, 16, 1);
  const std::string bytes = SerializeSqcal(p);
  EXPECT_EQ(bytes.size(), 48u + 3 * 2 * 2 * (2 * (16 * 4 + 16 * 16 * 4 + 24) + 16 * 4));
  absl::StatusOr<SqProfile> q = ParseSqcal(bytes, "default");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(SerializeSqcal(*q), bytes);
  EXPECT_EQ(q->model_hash, 0x1234abcdULL);
  EXPECT_EQ(q->n_layers, 3);
  EXPECT_EQ(q->n_kv_heads, 2);
  EXPECT_EQ(q->head_dim, 16);
  EXPECT_EQ(q->n_tokens, 64u);
  for (size_t i = 0; i < p.spectra.size(); ++i) {
    EXPECT_EQ(std::memcmp(p.spectra[i].lambda.data(), q->spectra[i].lambda.data(), 16 * 4), 0);
    EXPECT_EQ(std::memcmp(p.spectra[i].vecs.data(), q->spectra[i].vecs.data(), 256 * 4), 0);
    EXPECT_EQ(q->spectra[i].n_samples, 64u);
    EXPECT_EQ(q->centered[i].mean, p.centered[i].mean);
    EXPECT_EQ(std::memcmp(p.centered[i].lambda.data(), q->centered[i].lambda.data(), 16 * 4), 0);
    EXPECT_EQ(std::memcmp(p.centered[i].vecs.data(), q->centered[i].vecs.data(), 256 * 4), 0);
  }
  const std::string path = ::testing::TempDir() + "/rt_profile.sqcal";
  ASSERT_TRUE(WriteSqcal(p, path).ok());
  absl::StatusOr<SqProfile> f = ReadSqcal(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->name, "rt_profile");
  EXPECT_EQ(SerializeSqcal(*f), bytes);
  std::filesystem::remove(path);
}

TEST(Sqcal, OrthonormalDescendingAndSignConvention) {
  const SqProfile p = RandomProfile(2, 2, 32, 2);
  for (const SqSpectrum& s : p.spectra) {
    at::Tensor V = at::from_blob(const_cast<float*>(s.vecs.data()), {32, 32}, at::kFloat).t();  // [r, c]
    const double err = (V.t().matmul(V) - at::eye(32)).abs().max().item<double>();
    EXPECT_LT(err, 1e-5);
    for (int i = 1; i < 32; ++i) EXPECT_LE(s.lambda[i], s.lambda[i - 1]);
    EXPECT_GE(s.lambda[31], 0.0f);
    for (int c = 0; c < 32; ++c) {
      const float* col = s.vecs.data() + c * 32;
      int arg = 0;
      for (int r = 1; r < 32; ++r) {
        if (std::abs(col[r]) > std::abs(col[arg])) arg = r;
      }
      EXPECT_GT(col[arg], 0.0f) << "column " << c;
    }
  }
}

TEST(Sqcal, RejectsEveryTruncatedPrefix) {
  const std::string bytes = SerializeSqcal(RandomProfile(1, 1, 4, 3));
  for (size_t n = 0; n < bytes.size(); ++n) {
    absl::StatusOr<SqProfile> q = ParseSqcal(bytes.substr(0, n), "t");
    ASSERT_FALSE(q.ok()) << n;
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(ParseSqcal(bytes + "x", "t").ok());
}

TEST(Sqcal, RejectsCorruptHeaderNamingTheValue) {
  const std::string good = SerializeSqcal(RandomProfile(1, 2, 4, 4));
  auto expect = [&](size_t off, uint32_t v, const std::string& needle) {
    std::string b = good;
    Patch32(b, off, v);
    absl::StatusOr<SqProfile> q = ParseSqcal(b, "t");
    ASSERT_FALSE(q.ok()) << needle;
    EXPECT_NE(q.status().message().find(needle), std::string::npos) << q.status();
  };
  expect(0, 0x4b4b4b4b, "magic");
  expect(8, 3, "version must be 2 (got 3)");
  expect(8, 0, "version must be 2 (got 0)");
  {
    std::string b = good;
    Patch32(b, 8, 1);
    absl::StatusOr<SqProfile> q = ParseSqcal(b, "t");
    ASSERT_FALSE(q.ok());
    EXPECT_EQ(q.status().code(), absl::StatusCode::kFailedPrecondition) << q.status();
    EXPECT_NE(q.status().message().find("version 1 is stale"), std::string::npos) << q.status();
  }
  expect(12, 40, "header_bytes");
  expect(24, 0, "L must be in [1, 4096] (got 0)");
  expect(24, 0xffffffffu, "(got 4294967295)");
  expect(28, 5000, "Hkv must be in [1, 1024] (got 5000)");
  expect(32, 1, "D must be in [2, 1024] (got 1)");
  expect(32, 8, "file size must be");  // consistent caps, wrong size
  expect(24, 3, "file size must be");
  expect(36, 7, "reserved");
}

TEST(Sqcal, RejectsBadValues) {
  const std::string good = SerializeSqcal(RandomProfile(1, 1, 4, 5));
  const size_t lam = 48;
  {
    std::string b = good;
    const float nan = std::nanf("");
    std::memcpy(b.data() + lam + 4, &nan, 4);
    absl::StatusOr<SqProfile> q = ParseSqcal(b, "t");
    ASSERT_FALSE(q.ok());
    EXPECT_NE(q.status().message().find("lambda[1]"), std::string::npos) << q.status();
  }
  {
    std::string b = good;
    const float big = 1e30f;  // not descending
    std::memcpy(b.data() + lam + 8, &big, 4);
    EXPECT_FALSE(ParseSqcal(b, "t").ok());
  }
  {
    std::string b = good;
    const float inf = INFINITY;
    std::memcpy(b.data() + lam + 16 + 20, &inf, 4);
    absl::StatusOr<SqProfile> q = ParseSqcal(b, "t");
    ASSERT_FALSE(q.ok());
    EXPECT_NE(q.status().message().find("eigenvector entry 5"), std::string::npos) << q.status();
  }
  {
    std::string b = good;
    Patch32(b, lam + 16 + 64 + 4, 99);  // var_95 > D
    absl::StatusOr<SqProfile> q = ParseSqcal(b, "t");
    ASSERT_FALSE(q.ok());
    EXPECT_NE(q.status().message().find("var_95"), std::string::npos) << q.status();
  }
  {
    std::string b = good;
    Patch32(b, lam + 16 + 64 + 16, 1);  // n_samples = 1
    Patch32(b, lam + 16 + 64 + 20, 0);
    EXPECT_FALSE(ParseSqcal(b, "t").ok());
  }
  {
    std::string b = good;
    const float nan = std::nanf("");
    std::memcpy(b.data() + lam + 16 + 64 + 24 + 8, &nan, 4);  // mean[2] of block 0
    absl::StatusOr<SqProfile> q = ParseSqcal(b, "t");
    ASSERT_FALSE(q.ok());
    EXPECT_NE(q.status().message().find("mean[2]"), std::string::npos) << q.status();
  }
  EXPECT_EQ(ReadSqcal("/nonexistent/x.sqcal").status().code(), absl::StatusCode::kNotFound);
}

// The centred spectra are those of C - mu mu^T with mu the data's mean: the
// energy drops by |mu|^2, and a profile built by hand (no centred spectra)
// writes its uncentred one about a zero mean.
TEST(Sqcal, CentredSpectraAreAboutTheMean) {
  at::manual_seed(7);
  const int D = 8;
  at::Tensor k = at::randn({1, 500, D}) + at::linspace(-2.0, 2.0, D);
  at::Tensor v = at::randn({1, 500, D});
  SqCovariance cov(1, 1, D);
  cov.Add(0, k, v);
  absl::StatusOr<SqProfile> p = cov.Finish("default", 0);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(p->has_centered());
  const at::Tensor mu = k[0].to(at::kDouble).mean(0);
  const SqSpectrum &u = p->at(0, 0, 0), &c = p->at(0, 0, 0, true);
  double su = 0, sc = 0, m2 = 0;
  for (int i = 0; i < D; ++i) {
    EXPECT_NEAR(c.mean[i], mu[i].item<double>(), 1e-5) << i;
    su += u.lambda[i], sc += c.lambda[i], m2 += mu[i].item<double>() * mu[i].item<double>();
  }
  EXPECT_NEAR(sc, su - m2, 1e-3 * su);
  EXPECT_TRUE(u.mean.empty());
  SqProfile hand = *p;
  hand.centered.clear();
  EXPECT_FALSE(hand.has_centered());
  absl::StatusOr<SqProfile> q = ParseSqcal(SerializeSqcal(hand), "h");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->at(0, 0, 0, true).lambda, u.lambda);
  EXPECT_EQ(q->at(0, 0, 0, true).mean, std::vector<float>(D, 0.0f));
}

}  // namespace
}  // namespace kvstream
