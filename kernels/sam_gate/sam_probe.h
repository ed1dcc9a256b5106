// SAM-Gate curvature probe kernels (sam_gate.md §4 prefill step 2, C2-C5, §7):
// operators A_h, Rademacher probes Z, Hutchinson products and pair
// curvatures, and the exact (num_probes = 0) form. Host code then forms the
// harmonic set, f (double), the regime and the group ranking (§7 "host-only").
// Legend: sam_ring.h (H, Hk, G, D, P, K).
//
//   A_h[r, c] = softmax_{c <= r}(scale * <q_{w+r,h}, k_{w+c,g(h)}>), 0 for c > r   (§4 step 2)
//   Z[r, k]   = -1 if the top bit of splitmix64(seed ^ ((layer<<48)|(k<<32)|r)) is set, else +1  (C5)
//   U_h       = A_h Z;   e_h = ||U_h - Z||_F^2 / (K P)                            (Hutchinson)
//   W_ij      = A_i U_j  (all i, j);   F_ij = ||W_ij - W_ji||_F^2 / K  (i < j)   (E[F_ij] = ||[A_i,A_j]||_F^2)
//   exact:    e_h = ||A_h - I||_F^2 / P;   F_ij = ||A_i A_j - A_j A_i||_F^2
// F is written for every (i, j): the value above for i < j, 0 on and below
// the diagonal, so f = sum over non-harmonic pairs of the whole matrix.
//
// Shapes
//   q          [H, P, D] dtype, element (h, r, c) at h*q_stride_h + r*q_stride_p + c
//              (the last P prompt queries, post-RoPE; staging is usually
//              [T, H, D]: q = &staging[w, 0, 0], q_stride_h = D, q_stride_p = H*D)
//   k          [Hk, P, D] dtype, element (g, r, c) at g*k_stride_h + r*k_stride_p + c
//   a          [H, P, P] fp32 row-major
//   z          [P, K] fp32 (+-1)
//   u          [H, P, K] fp32;  e [H] fp32
//   w          [H, H, P, K] fp32: W_ij at (i*H + j)*P*K
//   f          [H, H] fp32: F_ij at i*H + j
// Probe workspace (reused across layers): SamProbeWorkspaceBytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/common/kv_dtype.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_SAM_HAS_LAUNCHER 1
#endif

namespace kvstream {

inline constexpr int kSamProbeMinWindow = 8;    // P < 8: the probe is skipped (C3)
inline constexpr int kSamProbeMaxWindow = 512;  // probe_window range (§5)
inline constexpr int kSamProbeMaxProbes = 64;   // num_probes range (§5)

struct SamProbeSoftmaxParams {
  const void* q = nullptr;   // [H, P, D] dtype (strided)
  const void* k = nullptr;   // [Hk, P, D] dtype (strided)
  float* a = nullptr;        // [H, P, P]
  int64_t q_stride_h = 0, q_stride_p = 0;  // elements; 0 = P*D and D
  int64_t k_stride_h = 0, k_stride_p = 0;  // elements; 0 = P*D and D
  int num_heads = 0;         // H
  int num_kv_heads = 0;      // Hk
  int head_dim = 0;          // D: 64 or 128
  int window = 0;            // P
  float scale = 0.0f;        // sigma, the model's attention scale
  KvDType dtype = KvDType::kBf16;
};

struct SamRademacherParams {
  float* z = nullptr;        // [P, K]
  uint64_t seed = 0;         // probe_seed
  int layer = 0;
  int window = 0;            // P
  int num_probes = 0;        // K (>= 1)
};

struct SamProbeProductsParams {
  const float* a = nullptr;  // [H, P, P]
  const float* z = nullptr;  // [P, K]
  float* u = nullptr;        // [H, P, K]
  float* e = nullptr;        // [H]
  float* w = nullptr;        // [H, H, P, K]
  int num_heads = 0, window = 0, num_probes = 0;  // H, P, K
};

struct SamProbePairsParams {
  const float* w = nullptr;  // [H, H, P, K]
  float* f = nullptr;        // [H, H]
  int num_heads = 0, window = 0, num_probes = 0;  // H, P, K
};

struct SamProbeExactParams {
  const float* a = nullptr;  // [H, P, P]
  float* f = nullptr;        // [H, H]
  float* e = nullptr;        // [H]
  int num_heads = 0, window = 0;  // H, P
};

// splitmix64 (C5), all arithmetic mod 2^64.
KV_HD uint64_t SamSplitMix64(uint64_t v) {
  v += 0x9E3779B97F4A7C15ull;
  v = (v ^ (v >> 30)) * 0xBF58476D1CE4E5B9ull;
  v = (v ^ (v >> 27)) * 0x94D049BB133111EBull;
  return v ^ (v >> 31);
}
// z[r, k] of C5.
KV_HD float SamRademacher(uint64_t seed, int layer, int k, int r) {
  const uint64_t key = (static_cast<uint64_t>(layer) << 48) | (static_cast<uint64_t>(k) << 32) |
                       static_cast<uint64_t>(static_cast<uint32_t>(r));
  return (SamSplitMix64(seed ^ key) >> 63) ? -1.0f : 1.0f;
}

// Bytes of the probe workspace of one layer (A, Z, U, e, W, F; fp32). With
// num_probes = 0 (exact) only A, e and F.
size_t SamProbeWorkspaceBytes(int num_heads, int window, int num_probes);

// nullptr if valid, else a static message naming the bad field.
const char* SamProbeSoftmaxValidate(const SamProbeSoftmaxParams& p);
const char* SamRademacherValidate(const SamRademacherParams& p);
const char* SamProbeProductsValidate(const SamProbeProductsParams& p);
const char* SamProbePairsValidate(const SamProbePairsParams& p);
const char* SamProbeExactValidate(const SamProbeExactParams& p);

// ---- CPU twins (host pointers; false and nothing written if invalid) ----------------------
// softmax: scores and softmax in double, max-subtracted (GPU: fp32, rel. err <= 1e-5).
bool SamProbeSoftmaxRef(const SamProbeSoftmaxParams& p);
// Bit-exact with the GPU.
bool SamRademacherRef(const SamRademacherParams& p);
// U and W: fp32 fmaf over c = 0..r in ascending order, the GPU's loop order
// (equal bits unless the compiler contracts differently); e in double.
bool SamProbeProductsRef(const SamProbeProductsParams& p);
// F in double (GPU: fp32 tree sum, rel. err <= 1e-4).
bool SamProbePairsRef(const SamProbePairsParams& p);
// Explicit products in double; the reference of the probe tests.
bool SamProbeExactRef(const SamProbeExactParams& p);

#if defined(KVSTREAM_SAM_HAS_LAUNCHER)
// One CTA per (head, query row). Never allocates or syncs.
cudaError_t LaunchSamProbeSoftmax(const SamProbeSoftmaxParams& p, cudaStream_t stream);
// One thread per element of Z.
cudaError_t LaunchSamRademacher(const SamRademacherParams& p, cudaStream_t stream);
// U: one thread per (h, r, k); e: one CTA per head; W: one thread per (i, j, r, k).
cudaError_t LaunchSamProbeProducts(const SamProbeProductsParams& p, cudaStream_t stream);
// One CTA per (i, j): fp32 strided partial sums, then a shared-memory tree.
cudaError_t LaunchSamProbePairs(const SamProbePairsParams& p, cudaStream_t stream);
// One CTA per (i, j) pair (commutator entries, tree sum) and per head (e).
cudaError_t LaunchSamProbeExact(const SamProbeExactParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
