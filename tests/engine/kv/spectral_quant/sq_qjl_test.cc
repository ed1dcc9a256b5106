// SpectralQuant's selective QJL score correction (spectral_quant.md §4.2 step
// 6, §4.3 step 2, §4.4; §9 test 7), through the engine's own pieces: the plan
// and device-plan builders (S_sem from the CPU generator seeded
// 42 + 1000 layer + head, S' = S_sem V_K), the K1 twin behind SqRunCompress
// (r_norm + sign words) and the K2 twin behind SqRunAttend (the correction
// sqrt(pi/2) / d_eff * r_norm * sum_m (S_sem q)_m sign_m inside the logit).
//
// A synthetic profile gives 64 layers x 4 KV heads the same spectrum and
// eigenbasis, so one key x has the same records and the same residual
// r = x - V_K z^ in every (layer, head); only S_sem differs: 256 generator
// seeds, 256 draws of the estimator. The correction each draw applies is read
// back from K2's output: one compressed key plus one dense key k = 0 (logit 0)
// with value e_0, so the compressed key's logit is log(p_c / p_d), and QJL on
// minus QJL off is scale * correction.
//  - the mean correction equals q.r within 3 standard errors (SE from the 256
//    draws), for q along r, against r and across r; the pair along r also
//    shows the check has power (|q.r| > 10 SE);
//  - S_sem is deterministic per (layer, head), whatever the global RNG state,
//    distinct between seeds, fp16-rounded standard normal; S' = S_sem V_K;
//  - every stored sign is +1 or -1 (a zero projection is +1), i.e. bit m < d_eff
//    is sign((S_sem r)_m), bits >= d_eff stay 0; a zero residual gives all +1,
//    r_norm 0 and no correction.
// The byte side of test 7 is SqCache.QjlBytesAreRnormPlusSignWords.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "engine/kv/spectral_quant/sq_device_plan.h"
#include "engine/kv/spectral_quant/sq_kernels.h"
#include "engine/kv/spectral_quant/sq_plan.h"

namespace kvstream {
namespace {

constexpr int64_t kLayers = 64, kHeads = 4, kD = 64;  // 256 (layer, head) = 256 generator seeds

// Every (layer, head, type) with lambda_i = 2^(-i/4) in one random orthonormal
// basis (K d_eff = 14 at tau 0.9: one sign word).
std::shared_ptr<const SqProfile> SharedBasisProfile(const at::Tensor& basis) {
  auto p = std::make_shared<SqProfile>();
  p->name = "default";
  p->n_layers = kLayers, p->n_kv_heads = kHeads, p->head_dim = kD;
  p->n_tokens = 1000;
  SqSpectrum s;
  for (int64_t i = 0; i < kD; ++i) s.lambda.push_back(static_cast<float>(std::pow(2.0, -i / 4.0)));
  at::Tensor cm = basis.t().contiguous().to(at::kFloat);  // column-major: vecs[c * D + r] = basis[r][c]
  s.vecs.assign(cm.data_ptr<float>(), cm.data_ptr<float>() + kD * kD);
  SqFillDiagnostics(s);
  s.n_samples = 1000;
  p->spectra.assign(kLayers * kHeads * 2, s);
  return p;
}

struct Fixture {
  at::Tensor basis;  // f64 [D, D] orthonormal
  std::shared_ptr<const SqProfile> profile;
  std::shared_ptr<const SqDevicePlan> dev;
};

const Fixture& Shared() {
  static const Fixture f = [] {
    Fixture f;
    at::manual_seed(7);
    f.basis = std::get<0>(at::linalg_qr(at::randn({kD, kD}, at::kDouble)));
    f.profile = SharedBasisProfile(f.basis);
    SpectralQuantConfig c;
    c.use_qjl = true;
    f.dev = SqBuildDevicePlan(SqBuildPlan(c, *f.profile), *f.profile, c10::Device(c10::kCPU));
    return f;
  }();
  return f;
}

// One key (and value) compressed in one layer by the engine's K1 call.
struct Compressed {
  at::Tensor k_rec, v_rec, r_norm, signs;  // [1, Hkv, .]
};

Compressed Compress(const SqLayerDevice& L, const at::Tensor& zk, const at::Tensor& zv) {
  Compressed c;
  auto i32 = at::TensorOptions().dtype(at::kInt);
  c.k_rec = at::zeros({1, kHeads, L.words_k}, i32);
  c.v_rec = at::zeros({1, kHeads, L.words_v}, i32);
  c.r_norm = at::zeros({1, kHeads}, at::TensorOptions().dtype(at::kShort));
  c.signs = at::zeros({1, kHeads, L.sign_words}, i32);
  SqCompressArgs a;
  a.zk = &zk, a.zv = &zv, a.dev = &L, a.tables = &Shared().dev->tables;
  a.k_rec = &c.k_rec, a.v_rec = &c.v_rec, a.r_norm = &c.r_norm, a.signs = &c.signs;
  a.n_kv_heads = kHeads, a.head_dim = kD;
  const absl::Status s = SqRunCompress(a);
  EXPECT_TRUE(s.ok()) << s;
  return c;
}

// Eigen coordinates of raw [Hkv, 1, D] vectors, as the engine's Compress: [1, Hkv, D].
at::Tensor Rotate(const at::Tensor& x, const at::Tensor& basis) {
  return at::matmul(x, basis).transpose(0, 1).contiguous();
}

// The QJL correction (in q.k units) K2 applied to the one compressed key of
// each head, for query q [Hkv, 1, D] (one query head per KV head).
at::Tensor CorrectionFromAttend(const SqLayerDevice& L, const Compressed& c, const at::Tensor& q) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(kD));
  at::Tensor q_rot = at::matmul(q, L.vk).contiguous();
  at::Tensor q_sketch = at::matmul(q, L.s_sem.transpose(-1, -2)).contiguous();  // (S_sem q)_m, as the engine
  at::Tensor q_raw = q.contiguous();
  at::Tensor dense_k = at::zeros({1, kHeads, kD}), dense_v = at::zeros({1, kHeads, kD});
  dense_v.select(2, 0).fill_(1.0f);
  auto i32 = at::TensorOptions().dtype(at::kInt);
  at::Tensor q_pos = at::full({1}, 1, i32), d_pos = at::full({1}, 1, i32);
  auto zv_hat = SqRunDequantHost(L, 1, c.v_rec, 1, kHeads, kD);
  EXPECT_TRUE(zv_hat.ok());
  at::Tensor zv = zv_hat->select(0, 0).to(at::kDouble);  // [Hkv, D]
  at::Tensor logit[2];
  for (int on = 0; on < 2; ++on) {
    SqAttendArgs a;
    a.q_rot = &q_rot, a.q_sketch = on ? &q_sketch : nullptr, a.q_raw = &q_raw;
    a.dev = &L, a.tables = &Shared().dev->tables;
    a.k_rec = &c.k_rec, a.v_rec = &c.v_rec, a.r_norm = &c.r_norm, a.signs = &c.signs, a.num_keys = 1;
    a.dense_k = &dense_k, a.dense_v = &dense_v, a.q_pos = &q_pos, a.d_pos = &d_pos;
    a.n_heads = kHeads, a.n_kv_heads = kHeads, a.head_dim = kD, a.scale = scale;
    auto out = SqRunAttend(a);
    EXPECT_TRUE(out.ok()) << out.status();
    // a_eig = p_c z^V, a_dense = p_d e_0.
    at::Tensor p_c = (out->a_eig.select(1, 0).to(at::kDouble) * zv).sum(-1) / (zv * zv).sum(-1);
    at::Tensor p_d = out->a_dense.select(1, 0).select(1, 0).to(at::kDouble);
    logit[on] = at::log(p_c / p_d);
  }
  return (logit[1] - logit[0]) / scale;
}

struct Pair {
  const char* label;
  double cos_qr;  // the query's cosine with r
};

TEST(SqQjl, MeanCorrectionOver256SeedsEqualsQDotResidual) {
  const Fixture& f = Shared();
  at::manual_seed(11);
  const at::Tensor sd = at::pow(2.0, -at::arange(kD, at::kDouble) / 8.0);
  for (int rep = 0; rep < 2; ++rep) {
    // A key drawn from the spectrum, a random value; the same in every head.
    at::Tensor x = at::matmul(f.basis, at::randn({kD}, at::kDouble) * sd);
    at::Tensor v = at::randn({kD}, at::kDouble);
    at::Tensor xs = x.to(at::kFloat).reshape({1, 1, kD}).expand({kHeads, 1, kD}).contiguous();
    at::Tensor vs = v.to(at::kFloat).reshape({1, 1, kD}).expand({kHeads, 1, kD}).contiguous();
    // The residual r = x - V_K z^K (z^K by the engine's K3 twin), equal in every (layer, head).
    const SqLayerDevice& L0 = f.dev->layers[0];
    Compressed c0 = Compress(L0, Rotate(xs, L0.vk), Rotate(vs, L0.vv));
    auto zk_hat = SqRunDequantHost(L0, 0, c0.k_rec, 1, kHeads, kD);
    ASSERT_TRUE(zk_hat.ok());
    at::Tensor r = x - at::matmul(f.basis, zk_hat->select(0, 0).select(0, 0).to(at::kDouble));
    const double rn = r.norm().item<double>();
    ASSERT_GT(rn, 1e-3);
    for (const Pair& pair : {Pair{"q along r", 0.8}, Pair{"q against r", -0.5}, Pair{"q across r", 0.0}}) {
      // q = |q| (cos u_r + sin u_perp), |q| chosen so that the logits stay O(1).
      at::Tensor u = r / rn;
      at::Tensor g = at::randn({kD}, at::kDouble);
      at::Tensor perp = g - (g * u).sum() * u;
      perp = perp / perp.norm();
      at::Tensor q = (pair.cos_qr * u + std::sqrt(1.0 - pair.cos_qr * pair.cos_qr) * perp) *
                     (2.0 * std::sqrt(double(kD)) / x.norm().item<double>());
      const double want = (q * r).sum().item<double>();
      at::Tensor qs = q.to(at::kFloat).reshape({1, 1, kD}).expand({kHeads, 1, kD}).contiguous();
      std::vector<double> draws;
      for (int64_t l = 0; l < kLayers; ++l) {
        const SqLayerDevice& L = f.dev->layers[l];
        Compressed c = Compress(L, Rotate(xs, L.vk), Rotate(vs, L.vv));
        ASSERT_TRUE(at::equal(c.k_rec, c0.k_rec) && at::equal(c.r_norm, c0.r_norm));  // only S_sem differs
        at::Tensor corr = CorrectionFromAttend(L, c, qs);
        for (int64_t h = 0; h < kHeads; ++h) draws.push_back(corr[h].item<double>());
      }
      ASSERT_EQ(draws.size(), 256u);
      double mean = 0.0, var = 0.0;
      for (double d : draws) mean += d / draws.size();
      for (double d : draws) var += (d - mean) * (d - mean) / (draws.size() - 1);
      const double se = std::sqrt(var / draws.size());
      std::printf("[qjl] key %d, %s: q.r %.5f, mean correction %.5f, SE %.5f (%.2f SE off), |r| %.4f, d_eff %d\n",
                  rep, pair.label, want, mean, se, (mean - want) / se, rn, L0.k_deff[0].item<int>());
      EXPECT_GT(se, 0.0);
      EXPECT_LE(std::fabs(mean - want), 3.0 * se) << pair.label << ": mean " << mean << " vs q.r " << want;
      if (pair.cos_qr > 0.5) {
        EXPECT_GT(std::fabs(want), 10.0 * se) << "the check must tell q.r from 0";
      }
    }
  }
}

TEST(SqQjl, SsemIsDeterministicPerLayerAndHeadAndStandardNormal) {
  const Fixture& f = Shared();
  SpectralQuantConfig c;
  c.use_qjl = true;
  std::shared_ptr<const SqPlan> plan = SqBuildPlan(c, *f.profile);
  std::vector<at::Tensor> firsts;
  at::Tensor all = at::empty({kLayers, kHeads, kD, kD});
  for (int64_t l : {int64_t{0}, int64_t{1}, int64_t{37}, kLayers - 1}) {
    at::manual_seed(100 + l);  // the global generator must not matter
    const SqLayerDevice a = SqBuildLayerDevice(*plan, *f.profile, l, c10::Device(c10::kCPU));
    at::manual_seed(999);
    at::randn({17});
    const SqLayerDevice b = SqBuildLayerDevice(*plan, *f.profile, l, c10::Device(c10::kCPU));
    EXPECT_TRUE(at::equal(a.s_sem, b.s_sem)) << "layer " << l;
    EXPECT_TRUE(at::equal(a.s_prime, b.s_prime)) << "layer " << l;
    EXPECT_TRUE(at::equal(a.s_sem, f.dev->layers[l].s_sem)) << "layer " << l;
    for (int64_t h = 0; h < kHeads; ++h) {
      const int64_t de = plan->layers[l].k[h].d_eff;
      const at::Tensor full = SqQjlMatrix(l, h, kD);
      EXPECT_TRUE(at::equal(full, SqQjlMatrix(l, h, kD)));
      EXPECT_TRUE(at::equal(a.s_sem[h].narrow(0, 0, de), full.narrow(0, 0, de))) << l << "," << h;
      EXPECT_EQ(a.s_sem[h].narrow(0, de, kD - de).abs().max().item<float>(), 0.0f) << "rows >= d_eff are 0";
      EXPECT_LT((a.s_prime[h] - at::matmul(a.s_sem[h], a.vk[h])).abs().max().item<float>(), 1e-4f);
    }
  }
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t h = 0; h < kHeads; ++h) all[l][h].copy_(SqQjlMatrix(l, h, kD));
  // fp16-rounded (§4.2 step 6), a different matrix for every seed 42 + 1000 l + h.
  EXPECT_TRUE(at::equal(all, all.to(at::kHalf).to(at::kFloat)));
  at::Tensor rows = all.select(2, 0).reshape({kLayers * kHeads, kD});
  at::Tensor same = (rows.unsqueeze(0) == rows.unsqueeze(1)).all(-1).to(at::kInt).sum();
  EXPECT_EQ(same.item<int64_t>(), kLayers * kHeads) << "two seeds gave the same first row";
  // Standard normal over 1M entries: mean 0 (SE 0.001), variance 1 (SE 0.0014).
  EXPECT_LT(std::fabs(all.mean().item<double>()), 0.006);
  EXPECT_LT(std::fabs(all.var().item<double>() - 1.0), 0.008);
}

TEST(SqQjl, SignsArePlusOrMinusOneOfTheSketchedResidual) {
  const Fixture& f = Shared();
  at::manual_seed(12);
  const at::Tensor sd = at::pow(2.0, -at::arange(kD, at::kDouble) / 8.0);
  int checked = 0;
  for (int64_t l : {int64_t{0}, int64_t{5}, int64_t{63}}) {
    const SqLayerDevice& L = f.dev->layers[l];
    // Different keys per head.
    at::Tensor x = at::matmul(at::randn({kHeads, 1, kD}, at::kDouble) * sd, f.basis.t()).to(at::kFloat);
    Compressed c = Compress(L, Rotate(x, L.vk), Rotate(x, L.vv));
    auto zk_hat = SqRunDequantHost(L, 0, c.k_rec, 1, kHeads, kD);
    ASSERT_TRUE(zk_hat.ok());
    at::Tensor rn = c.r_norm.view(at::kHalf).to(at::kDouble);
    ASSERT_EQ(L.sign_words, 1);
    for (int64_t h = 0; h < kHeads; ++h) {
      at::Tensor r = x[h][0].to(at::kDouble) - at::matmul(f.basis, zk_hat->select(0, 0)[h].to(at::kDouble));
      EXPECT_NEAR(rn[0][h].item<double>(), r.norm().item<double>(), 1e-3 * r.norm().item<double>());
      at::Tensor proj = at::matmul(L.s_sem[h].to(at::kDouble), r);  // (S_sem r)_m
      const uint32_t word = static_cast<uint32_t>(c.signs[0][h][0].item<int32_t>());
      const int de = L.k_deff[h].item<int>();
      for (int m = 0; m < 32; ++m) {
        const bool bit = (word >> m) & 1u;
        if (m >= de) {
          EXPECT_FALSE(bit) << "unused sign bit " << m;
          continue;
        }
        const double a = proj[m].item<double>();
        if (std::fabs(a) < 1e-4 * L.s_sem[h][m].norm().item<double>() * r.norm().item<double>()) continue;
        EXPECT_EQ(bit ? 1 : -1, a >= 0 ? 1 : -1) << "layer " << l << " head " << h << " m " << m;
        ++checked;
      }
    }
    // A key on its own reconstruction: zero residual, every projection 0 -> +1
    // (all d_eff bits set), r_norm 0, so no correction.
    at::Tensor zk0 = zk_hat->contiguous();
    Compressed z = Compress(L, zk0, Rotate(x, L.vv));
    EXPECT_TRUE(at::equal(z.k_rec, c.k_rec));
    EXPECT_EQ(z.r_norm.abs().max().item<int>(), 0);
    for (int64_t h = 0; h < kHeads; ++h) {
      const int de = L.k_deff[h].item<int>();
      EXPECT_EQ(static_cast<uint32_t>(z.signs[0][h][0].item<int32_t>()), de == 32 ? ~0u : (1u << de) - 1u);
    }
    at::Tensor q = at::randn({kHeads, 1, kD});
    EXPECT_LT(CorrectionFromAttend(L, z, q).abs().max().item<double>(), 1e-4);
  }
  EXPECT_GT(checked, 3 * kHeads * 10);
}

}  // namespace
}  // namespace kvstream
