// CPU twins of the SAM-Gate probe kernels (formulas in sam_probe.h, from
// sam_gate.md §4 prefill step 2 and C5) and their validators. The engine's
// CPU path runs these directly; sizes are small (H^2 P^2 K per layer, once
// per request).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/sam_gate/sam_probe.h"

namespace kvstream {
namespace {

bool WindowOk(int P) { return P >= kSamProbeMinWindow && P <= kSamProbeMaxWindow; }
bool HeadsOk(int H) { return H >= 1 && H <= 128; }

}  // namespace

size_t SamProbeWorkspaceBytes(int H, int P, int K) {
  const size_t h = H, p = P, k = K;
  size_t floats = h * p * p + h + h * h;  // A, e, F
  if (K > 0) floats += p * k + h * p * k + h * h * p * k;  // Z, U, W
  return floats * sizeof(float);
}

const char* SamProbeSoftmaxValidate(const SamProbeSoftmaxParams& p) {
  if (!p.q || !p.k || !p.a) return "q, k and a must be non-null";
  if (!HeadsOk(p.num_heads) || p.num_kv_heads < 1 || p.num_heads % p.num_kv_heads != 0)
    return "num_heads must be in [1, 128] and a multiple of num_kv_heads";
  if (p.head_dim != 64 && p.head_dim != 128) return "head_dim must be 64 or 128";
  if (!WindowOk(p.window)) return "window (P) must be in [8, 512]";
  if (!std::isfinite(p.scale) || p.scale <= 0.0f) return "scale must be finite and > 0";
  if (p.dtype != KvDType::kFp32 && p.dtype != KvDType::kFp16 && p.dtype != KvDType::kBf16)
    return "dtype must be fp32, fp16 or bf16";
  return nullptr;
}

const char* SamRademacherValidate(const SamRademacherParams& p) {
  if (!p.z) return "z must be non-null";
  if (!WindowOk(p.window)) return "window (P) must be in [8, 512]";
  if (p.num_probes < 1 || p.num_probes > kSamProbeMaxProbes) return "num_probes must be in [1, 64]";
  if (p.layer < 0 || p.layer >= (1 << 15)) return "layer must be in [0, 2^15)";
  return nullptr;
}

const char* SamProbeProductsValidate(const SamProbeProductsParams& p) {
  if (!p.a || !p.z || !p.u || !p.e || !p.w) return "a, z, u, e and w must be non-null";
  if (!HeadsOk(p.num_heads)) return "num_heads must be in [1, 128]";
  if (!WindowOk(p.window)) return "window (P) must be in [8, 512]";
  if (p.num_probes < 1 || p.num_probes > kSamProbeMaxProbes) return "num_probes must be in [1, 64]";
  return nullptr;
}

const char* SamProbePairsValidate(const SamProbePairsParams& p) {
  if (!p.w || !p.f) return "w and f must be non-null";
  if (!HeadsOk(p.num_heads)) return "num_heads must be in [1, 128]";
  if (!WindowOk(p.window)) return "window (P) must be in [8, 512]";
  if (p.num_probes < 1 || p.num_probes > kSamProbeMaxProbes) return "num_probes must be in [1, 64]";
  return nullptr;
}

const char* SamProbeExactValidate(const SamProbeExactParams& p) {
  if (!p.a || !p.f || !p.e) return "a, f and e must be non-null";
  if (!HeadsOk(p.num_heads)) return "num_heads must be in [1, 128]";
  if (!WindowOk(p.window)) return "window (P) must be in [8, 512]";
  return nullptr;
}

bool SamProbeSoftmaxRef(const SamProbeSoftmaxParams& p) {
  if (SamProbeSoftmaxValidate(p) != nullptr) return false;
  const int P = p.window, D = p.head_dim, G = p.num_heads / p.num_kv_heads;
  const int64_t qsh = p.q_stride_h ? p.q_stride_h : int64_t(P) * D, qsp = p.q_stride_p ? p.q_stride_p : D;
  const int64_t ksh = p.k_stride_h ? p.k_stride_h : int64_t(P) * D, ksp = p.k_stride_p ? p.k_stride_p : D;
  std::vector<double> z(P);
  for (int h = 0; h < p.num_heads; ++h) {
    const int g = h / G;
    for (int r = 0; r < P; ++r) {
      double mx = -INFINITY;
      for (int c = 0; c <= r; ++c) {
        double dot = 0.0;
        for (int d = 0; d < D; ++d) {
          dot += double(LoadAsFloat(p.q, h * qsh + r * qsp + d, p.dtype)) *
                 LoadAsFloat(p.k, g * ksh + c * ksp + d, p.dtype);
        }
        z[c] = dot * p.scale;
        mx = std::max(mx, z[c]);
      }
      double l = 0.0;
      for (int c = 0; c <= r; ++c) l += (z[c] = std::exp(z[c] - mx));
      float* row = p.a + (int64_t(h) * P + r) * P;
      for (int c = 0; c < P; ++c) row[c] = c <= r ? static_cast<float>(z[c] / l) : 0.0f;
    }
  }
  return true;
}

bool SamRademacherRef(const SamRademacherParams& p) {
  if (SamRademacherValidate(p) != nullptr) return false;
  for (int r = 0; r < p.window; ++r) {
    for (int k = 0; k < p.num_probes; ++k) p.z[r * p.num_probes + k] = SamRademacher(p.seed, p.layer, k, r);
  }
  return true;
}

bool SamProbeProductsRef(const SamProbeProductsParams& p) {
  if (SamProbeProductsValidate(p) != nullptr) return false;
  const int H = p.num_heads, P = p.window, K = p.num_probes;
  const int64_t pp = int64_t(P) * P, pk = int64_t(P) * K;
  // X[r, k] = sum_{c <= r} A[r, c] * Y[c, k] (A lower-triangular), fp32 fmaf
  // in ascending c: the GPU kernels' order.
  auto lower_times = [&](const float* A, const float* Y, float* X) {
    for (int r = 0; r < P; ++r) {
      for (int k = 0; k < K; ++k) {
        float acc = 0.0f;
        for (int c = 0; c <= r; ++c) acc = std::fma(A[int64_t(r) * P + c], Y[int64_t(c) * K + k], acc);
        X[int64_t(r) * K + k] = acc;
      }
    }
  };
  for (int h = 0; h < H; ++h) {
    lower_times(p.a + h * pp, p.z, p.u + h * pk);
    double e = 0.0;
    for (int64_t i = 0; i < pk; ++i) e += std::pow(double(p.u[h * pk + i]) - p.z[i], 2);
    p.e[h] = static_cast<float>(e / double(pk));
  }
  for (int i = 0; i < H; ++i) {
    for (int j = 0; j < H; ++j) lower_times(p.a + i * pp, p.u + j * pk, p.w + (int64_t(i) * H + j) * pk);
  }
  return true;
}

bool SamProbePairsRef(const SamProbePairsParams& p) {
  if (SamProbePairsValidate(p) != nullptr) return false;
  const int H = p.num_heads;
  const int64_t pk = int64_t(p.window) * p.num_probes;
  for (int i = 0; i < H; ++i) {
    for (int j = 0; j < H; ++j) {
      double f = 0.0;
      if (i < j) {
        const float* wij = p.w + (int64_t(i) * H + j) * pk;
        const float* wji = p.w + (int64_t(j) * H + i) * pk;
        for (int64_t x = 0; x < pk; ++x) f += std::pow(double(wij[x]) - wji[x], 2);
        f /= p.num_probes;
      }
      p.f[i * H + j] = static_cast<float>(f);
    }
  }
  return true;
}

bool SamProbeExactRef(const SamProbeExactParams& p) {
  if (SamProbeExactValidate(p) != nullptr) return false;
  const int H = p.num_heads, P = p.window;
  const int64_t pp = int64_t(P) * P;
  for (int h = 0; h < H; ++h) {
    double e = 0.0;
    for (int r = 0; r < P; ++r) {
      for (int c = 0; c < P; ++c) e += std::pow(double(p.a[h * pp + r * P + c]) - (r == c ? 1.0 : 0.0), 2);
    }
    p.e[h] = static_cast<float>(e / P);
  }
  for (int i = 0; i < H; ++i) {
    for (int j = 0; j < H; ++j) {
      double f = 0.0;
      if (i < j) {
        const float* ai = p.a + i * pp;
        const float* aj = p.a + j * pp;
        // [A_i, A_j][r, c] = sum_m A_i[r,m] A_j[m,c] - A_j[r,m] A_i[m,c]; lower-
        // triangular factors: only c <= m <= r contribute, and c > r is 0.
        for (int r = 0; r < P; ++r) {
          for (int c = 0; c <= r; ++c) {
            double x = 0.0;
            for (int m = c; m <= r; ++m) x += double(ai[r * P + m]) * aj[m * P + c] - double(aj[r * P + m]) * ai[m * P + c];
            f += x * x;
          }
        }
      }
      p.f[i * H + j] = static_cast<float>(f);
    }
  }
  return true;
}

}  // namespace kvstream
