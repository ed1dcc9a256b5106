#include "engine/model/fused_block.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>

#include "kernels/model/fused_ops.h"
#endif

namespace kvstream {

#ifdef KVSTREAM_HAVE_CUDA_TORCH
namespace {

KvDType DtypeOf(const at::Tensor& t) { return t.scalar_type() == at::kBFloat16 ? KvDType::kBf16 : KvDType::kFp32; }

absl::Status Check(cudaError_t e, const char* op) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(op, ": ", cudaGetErrorString(e)));
}

}  // namespace

bool FusedBlockAvailable(const at::Tensor& like) {
  static const bool enabled = [] {
    const char* env = std::getenv("KVSTREAM_FUSED_OPS");
    return env == nullptr || std::string(env) != "0";
  }();
  return enabled && like.is_cuda() && (like.scalar_type() == at::kBFloat16 || like.scalar_type() == at::kFloat);
}

absl::Status AddRmsNorm(at::Tensor& x, const at::Tensor& delta, const at::Tensor& weight, at::Tensor& out,
                        double eps) {
  RmsNormParams p;
  // With a delta: the kernel adds x (here: delta) into residual (here: x).
  p.x = delta.defined() ? delta.const_data_ptr() : x.const_data_ptr();
  p.x_stride = delta.defined() ? delta.stride(0) : x.stride(0);
  p.residual = delta.defined() ? x.mutable_data_ptr() : nullptr;
  p.weight = weight.const_data_ptr();
  p.out = out.mutable_data_ptr();
  p.rows = static_cast<int>(x.size(0));
  p.hidden = static_cast<int>(x.size(1));
  p.eps = static_cast<float>(eps);
  p.dtype = DtypeOf(x);
  return Check(LaunchRmsNorm(p, at::cuda::getCurrentCUDAStream()), "fused add+rmsnorm");
}

absl::Status RopeQk(at::Tensor& qkv, const at::Tensor& positions, const at::Tensor& inv_freq, int64_t n_heads,
                    int64_t n_kv_heads, int64_t head_dim) {
  RopeParams p;
  p.qkv = qkv.mutable_data_ptr();
  p.positions = positions.const_data_ptr<int64_t>();
  p.inv_freq = inv_freq.const_data_ptr<float>();
  p.qkv_stride = qkv.stride(0);
  p.rows = static_cast<int>(qkv.size(0));
  p.num_heads = static_cast<int>(n_heads);
  p.num_kv_heads = static_cast<int>(n_kv_heads);
  p.head_dim = static_cast<int>(head_dim);
  p.dtype = DtypeOf(qkv);
  return Check(LaunchRope(p, at::cuda::getCurrentCUDAStream()), "fused rope");
}

absl::StatusOr<at::Tensor> SiluMul(const at::Tensor& gate_up) {
  const int64_t I = gate_up.size(1) / 2;
  at::Tensor out = at::empty({gate_up.size(0), I}, gate_up.options());
  SiluMulParams p;
  p.gate_up = gate_up.const_data_ptr();
  p.out = out.mutable_data_ptr();
  p.rows = static_cast<int>(gate_up.size(0));
  p.inter = static_cast<int>(I);
  p.dtype = DtypeOf(gate_up);
  absl::Status s = Check(LaunchSiluMul(p, at::cuda::getCurrentCUDAStream()), "fused silu*mul");
  if (!s.ok()) return s;
  return out;
}

#else  // no CUDA kernels in this build

bool FusedBlockAvailable(const at::Tensor&) { return false; }
absl::Status AddRmsNorm(at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, double) {
  return absl::FailedPreconditionError("fused ops need the CUDA build");
}
absl::Status RopeQk(at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t, int64_t) {
  return absl::FailedPreconditionError("fused ops need the CUDA build");
}
absl::StatusOr<at::Tensor> SiluMul(const at::Tensor&) {
  return absl::FailedPreconditionError("fused ops need the CUDA build");
}

#endif

}  // namespace kvstream
