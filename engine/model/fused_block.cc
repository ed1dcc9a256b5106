#include "engine/model/fused_block.h"

#include <ATen/ATen.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/env_switch.h"

#ifdef KVSTREAM_HAVE_CUDA_TORCH
#include <ATen/cuda/CUDAContext.h>

#include "kernels/model/fused_ops.h"
#include "kernels/model/gemv.h"
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
  static const bool enabled = EnvSwitchOn("KVSTREAM_FUSED_OPS");
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

// Rows up to which our GEMV beats cuBLAS on the H100 (bench/results/gpu/
// gemv_bench_h100.json, Llama-3-8B projections: 1.05-1.20x at M = 1, 1.02-1.10x
// at M = 2, 0.8-1.0x from M = 4 on, where cuBLAS's tiles win).
namespace {

constexpr int64_t kSkinnyMaxRows = 2;

bool SkinnyEnabled() {
  static const bool enabled = EnvSwitchOn("KVSTREAM_GEMV");
  return enabled;
}

// The GemvParams of y = x · wᵀ (+ b), or nullopt where our GEMV does not apply.
std::optional<GemvParams> SkinnyParams(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const auto st = x.scalar_type();
  if (!SkinnyEnabled() || !x.is_cuda() || (st != at::kBFloat16 && st != at::kHalf) || x.dim() != 2 ||
      w.scalar_type() != st || (b.defined() && (b.scalar_type() != st || !b.is_contiguous()))) {
    return std::nullopt;
  }
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  if (M < 1 || M > kSkinnyMaxRows || K % 8 != 0 || x.stride(1) != 1 || x.stride(0) % 8 != 0 || !w.is_contiguous() ||
      w.size(1) != K || N > INT32_MAX || K > INT32_MAX) {
    return std::nullopt;
  }
  GemvParams p;
  p.x = x.const_data_ptr();
  p.w = w.const_data_ptr();
  p.bias = b.defined() ? b.const_data_ptr() : nullptr;
  p.x_stride = x.stride(0);
  p.rows = static_cast<int>(M);
  p.out_features = static_cast<int>(N);
  p.in_features = static_cast<int>(K);
  p.dtype = st == at::kBFloat16 ? KvDType::kBf16 : KvDType::kFp16;
  return p;
}

}  // namespace

bool GemvEpiloguesEnabled() {
  static const bool enabled = EnvSwitchOn("KVSTREAM_GEMV_EPILOGUE");
  return enabled;
}

std::optional<at::Tensor> SkinnyLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  std::optional<GemvParams> p = SkinnyParams(x, w, b);
  if (!p) return std::nullopt;
  at::Tensor y = at::empty({x.size(0), w.size(0)}, x.options());
  p->y = y.mutable_data_ptr();
  // Misaligned storage (a view at an odd offset) is refused by the launcher
  // before anything is enqueued: at::linear takes it.
  if (LaunchGemv(*p, at::cuda::getCurrentCUDAStream()) != cudaSuccess) return std::nullopt;
  return y;
}

std::optional<NormLinearOut> SkinnyNormLinear(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& norm_w,
                                              double eps, const at::Tensor& w, const at::Tensor& b,
                                              const ProjectEpilogue& epilogue) {
  std::optional<GemvParams> p = SkinnyParams(x, w, b);
  if (!p || !x.is_contiguous() || norm_w.scalar_type() != x.scalar_type() || !norm_w.is_contiguous() ||
      norm_w.numel() != x.size(1) || (delta.defined() && (!delta.is_contiguous() || delta.sizes() != x.sizes() ||
                                                          delta.scalar_type() != x.scalar_type())) ||
      static_cast<int64_t>(p->rows) * p->in_features * 4 > kGemvNormMaxSmemBytes) {
    return std::nullopt;
  }
  switch (epilogue.kind) {
    case ProjectEpilogue::kNone: break;
    case ProjectEpilogue::kSiluMul: p->epilogue = GemvEpilogue::kSiluMul; break;
    case ProjectEpilogue::kRope:
      if (epilogue.positions.scalar_type() != at::kLong || epilogue.positions.numel() != x.size(0) ||
          !epilogue.positions.is_contiguous() || epilogue.inv_freq.scalar_type() != at::kFloat ||
          !epilogue.inv_freq.is_contiguous() ||
          w.size(0) != (epilogue.n_heads + 2 * epilogue.n_kv_heads) * epilogue.head_dim) {
        return std::nullopt;
      }
      p->epilogue = GemvEpilogue::kRope;
      p->positions = epilogue.positions.const_data_ptr<int64_t>();
      p->inv_freq = epilogue.inv_freq.const_data_ptr<float>();
      p->head_dim = static_cast<int>(epilogue.head_dim);
      p->rope_heads = static_cast<int>(epilogue.n_heads + epilogue.n_kv_heads);
      break;
  }
  if (p->epilogue != GemvEpilogue::kNone && p->rows > kGemvEpilogueMaxRows) return std::nullopt;
  NormLinearOut out;
  out.y = at::empty({x.size(0), GemvOutColumns(*p)}, x.options());
  p->y = out.y.mutable_data_ptr();
  p->norm_weight = norm_w.const_data_ptr();
  p->eps = static_cast<float>(eps);
  if (delta.defined()) {
    out.residual = at::empty_like(x);
    p->delta = delta.const_data_ptr();
    p->residual_out = out.residual.mutable_data_ptr();
  }
  if (LaunchGemv(*p, at::cuda::getCurrentCUDAStream()) != cudaSuccess) return std::nullopt;
  return out;
}

#else  // no CUDA kernels in this build

std::optional<at::Tensor> SkinnyLinear(const at::Tensor&, const at::Tensor&, const at::Tensor&) { return std::nullopt; }
std::optional<NormLinearOut> SkinnyNormLinear(const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                              const at::Tensor&, const at::Tensor&, const ProjectEpilogue&) {
  return std::nullopt;
}

bool FusedBlockAvailable(const at::Tensor&) { return false; }
bool GemvEpiloguesEnabled() { return false; }
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
