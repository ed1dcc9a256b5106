// The curvature probe of one layer (sam_gate.md §4 prefill step 2, C2-C5):
// A_h over the last P prompt tokens, Hutchinson (or exact) e_h and F_ij
// through the sam_probe_* kernels, then f over the non-harmonic pairs in
// double on the host.
#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "kernels/sam_gate/sam_gate.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif

namespace kvstream {
namespace {

}  // namespace

absl::Status SamGateSequenceCache::RunProbe(int64_t layer, int64_t P) {
  Layer& L = layers_[layer];
  const int64_t T = L.seen, H = geometry_.n_heads, Hk = geometry_.n_kv_heads, D = geometry_.head_dim;
  const int K = config_.num_probes;
  const bool cuda = geometry_.device.is_cuda();
  at::Tensor q = L.q_tail.narrow(1, L.q_tail.size(1) - P, P).contiguous();  // [H, P, D]
  at::Tensor k = L.stage_k.narrow(1, T - P, P);                             // [Hk, P, D] strided
  // Transient probe buffers (A, Z, U, e, W, F: SamProbeWorkspaceBytes), freed
  // on return; not in peak_kv_bytes or PredictBytes (§3 counts them apart).
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(geometry_.device);
  at::Tensor a = at::empty({H, P, P}, f32);
  at::Tensor e = at::zeros({H}, f32);
  at::Tensor f = at::zeros({H, H}, f32);
  at::Tensor z, u, w;

  SamProbeSoftmaxParams sp;
  sp.q = q.const_data_ptr();
  sp.k = k.const_data_ptr();
  sp.a = a.mutable_data_ptr<float>();
  sp.q_stride_h = q.stride(0);
  sp.q_stride_p = q.stride(1);
  sp.k_stride_h = k.stride(0);
  sp.k_stride_p = k.stride(1);
  sp.num_heads = static_cast<int>(H);
  sp.num_kv_heads = static_cast<int>(Hk);
  sp.head_dim = static_cast<int>(D);
  sp.window = static_cast<int>(P);
  sp.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  sp.dtype = KvDTypeOf(geometry_.dtype);
  SamRademacherParams rp;
  SamProbeProductsParams pp;
  SamProbePairsParams pr;
  SamProbeExactParams ep;
  if (K > 0) {
    z = at::empty({P, K}, f32);
    u = at::empty({H, P, K}, f32);
    w = at::empty({H, H, P, K}, f32);
    rp.z = z.mutable_data_ptr<float>();
    rp.seed = config_.probe_seed;
    rp.layer = static_cast<int>(layer);
    rp.window = static_cast<int>(P);
    rp.num_probes = K;
    pp.a = a.const_data_ptr<float>();
    pp.z = z.const_data_ptr<float>();
    pp.u = u.mutable_data_ptr<float>();
    pp.e = e.mutable_data_ptr<float>();
    pp.w = w.mutable_data_ptr<float>();
    pp.num_heads = static_cast<int>(H);
    pp.window = static_cast<int>(P);
    pp.num_probes = K;
    pr.w = w.const_data_ptr<float>();
    pr.f = f.mutable_data_ptr<float>();
    pr.num_heads = static_cast<int>(H);
    pr.window = static_cast<int>(P);
    pr.num_probes = K;
  } else {
    ep.a = a.const_data_ptr<float>();
    ep.f = f.mutable_data_ptr<float>();
    ep.e = e.mutable_data_ptr<float>();
    ep.num_heads = static_cast<int>(H);
    ep.window = static_cast<int>(P);
  }
  const char* err = SamProbeSoftmaxValidate(sp);
  if (err == nullptr) err = K > 0 ? SamRademacherValidate(rp) : SamProbeExactValidate(ep);
  if (err == nullptr && K > 0) err = SamProbeProductsValidate(pp);
  if (err == nullptr && K > 0) err = SamProbePairsValidate(pr);
  if (err != nullptr) return absl::InternalError(absl::StrCat("sam_gate layer ", layer, ": probe: ", err));
  if (cuda) {
#ifdef KVSTREAM_HAVE_CUDA_TORCH
    cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    cudaError_t c = LaunchSamProbeSoftmax(sp, stream);
    if (c == cudaSuccess) c = K > 0 ? LaunchSamRademacher(rp, stream) : LaunchSamProbeExact(ep, stream);
    if (c == cudaSuccess && K > 0) c = LaunchSamProbeProducts(pp, stream);
    if (c == cudaSuccess && K > 0) c = LaunchSamProbePairs(pr, stream);
    if (c != cudaSuccess) return absl::InternalError(absl::StrCat("sam_gate: probe launch: ", cudaGetErrorString(c)));
#else
    return absl::InternalError("sam_gate: CUDA tensors in a build without CUDA");
#endif
  } else {
    bool ok = SamProbeSoftmaxRef(sp);
    ok = ok && (K > 0 ? SamRademacherRef(rp) : SamProbeExactRef(ep));
    ok = ok && (K == 0 || SamProbeProductsRef(pp));
    ok = ok && (K == 0 || SamProbePairsRef(pr));
    if (!ok) return absl::InternalError("sam_gate: a probe twin refused its params");
  }
  // Host: harmonic set, f in double, tr(Delta) (§4 step 2, C4).
  at::Tensor eh = e.to(at::kCPU).contiguous(), fh = f.to(at::kCPU).contiguous();
  const float* ep_h = eh.const_data_ptr<float>();
  const float* fp_h = fh.const_data_ptr<float>();
  L.e.assign(ep_h, ep_h + H);
  std::vector<bool> harmonic(H);
  L.harmonic_heads = 0;
  double tr = 0.0;
  for (int64_t h = 0; h < H; ++h) {
    harmonic[h] = L.e[h] < config_.tau;
    L.harmonic_heads += harmonic[h] ? 1 : 0;
    tr += L.e[h];
  }
  double sum = 0.0;
  for (int64_t i = 0; i < H; ++i) {
    if (harmonic[i]) continue;
    for (int64_t j = i + 1; j < H; ++j) {
      if (!harmonic[j]) sum += fp_h[i * H + j];
    }
  }
  L.f = sum;
  L.tr_delta = static_cast<double>(P) * tr;
  L.probe_p = static_cast<int>(P);
  return absl::OkStatus();
}

}  // namespace kvstream
