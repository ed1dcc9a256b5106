// The CUDA decode path's fused elementwise ops (kernels/model/fused_ops.h)
// on at::Tensors: residual add + RMSNorm, RoPE on the fused qkv rows, SwiGLU.
// Used when the model runs on CUDA (KVSTREAM_FUSED_OPS=0 turns them off for
// A/B runs); the CPU path keeps the ATen compositions they replace.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvstream {

// True when this build has the kernels and `like` is a CUDA bf16/fp32 tensor.
bool FusedBlockAvailable(const at::Tensor& like);

// If `delta` is defined: x += delta (in place, rounded to x's dtype). Then
// out = RMSNorm(x) * weight. x, out: [N, E] contiguous.
absl::Status AddRmsNorm(at::Tensor& x, const at::Tensor& delta, const at::Tensor& weight, at::Tensor& out,
                        double eps);
// RoPE in place on the q and k heads of qkv [N, (H + 2 Hkv) D] (row-strided).
absl::Status RopeQk(at::Tensor& qkv, const at::Tensor& positions, const at::Tensor& inv_freq, int64_t n_heads,
                    int64_t n_kv_heads, int64_t head_dim);
// [N, 2I] gate|up -> [N, I] silu(gate) * up.
absl::StatusOr<at::Tensor> SiluMul(const at::Tensor& gate_up);

// x [M, K] · wᵀ (+ b) through our skinny GEMV (kernels/model/gemv.h) when it
// applies: CUDA bf16/fp16, M ≤ 2 (where it beats cuBLAS), K a multiple of 8, 16-byte aligned rows.
// nullopt otherwise (the caller uses at::linear). KVSTREAM_GEMV=0 turns it
// off for A/B runs.
std::optional<at::Tensor> SkinnyLinear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// The residual add + RMSNorm folded into the projection after it, one kernel
// (kernels/model/gemv.h prologue): y = RMSNorm(x (+ delta)) · norm_w · wᵀ (+ b).
// With delta, `residual` is x + delta as a fresh tensor (x is not written:
// every CTA of the kernel reads it). nullopt where SkinnyLinear would not
// apply or x' does not fit the kernel's shared memory; the caller then runs
// AddRmsNorm + Project.
struct NormLinearOut {
  at::Tensor y;
  at::Tensor residual;  // undefined without delta
};
// The op after a projection that the GEMV can apply to its output in the
// same kernel (kernels/model/gemv.h epilogues): the block's SwiGLU after
// gate_up, its RoPE after qkv.
struct ProjectEpilogue {
  enum Kind { kNone, kSiluMul, kRope };
  Kind kind = kNone;
  at::Tensor positions;  // kRope: [N] int64, on the device
  at::Tensor inv_freq;   // kRope: [D/2] fp32
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;  // kRope: qkv layout
};
// KVSTREAM_GEMV_EPILOGUE=0 keeps RoPE and SwiGLU in their own kernels (A/B runs).
bool GemvEpiloguesEnabled();
std::optional<NormLinearOut> SkinnyNormLinear(const at::Tensor& x, const at::Tensor& delta, const at::Tensor& norm_w,
                                              double eps, const at::Tensor& w, const at::Tensor& b,
                                              const ProjectEpilogue& epilogue = {});

}  // namespace kvstream
