// LaunchAkvMixedAttention: validates Params, then one switch over (dtype,
// head_dim) picks the instantiated launcher (inst/). Never allocates or syncs.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/inst/akv_attention_inst.h"

namespace kvstream {

cudaError_t LaunchAkvMixedAttention(const AkvAttentionParams& p, cudaStream_t stream) {
  using akv_attn_detail::LaunchAkvAttentionTyped;
  if (AkvAttentionValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (!AkvCudaSupports(p.layout.head_dim, p.layout.dtype, p.layout.warm_bits)) return cudaErrorInvalidValue;
  if (p.num_rows == 0) return cudaSuccess;
  switch (p.layout.dtype) {
    case KvDType::kBf16:
      switch (p.layout.head_dim) {
        case 64: return LaunchAkvAttentionTyped<__nv_bfloat16, 64>(p, stream);
        case 128: return LaunchAkvAttentionTyped<__nv_bfloat16, 128>(p, stream);
        default: return cudaErrorInvalidValue;
      }
    case KvDType::kFp32:
      switch (p.layout.head_dim) {
        case 64: return LaunchAkvAttentionTyped<float, 64>(p, stream);
        case 128: return LaunchAkvAttentionTyped<float, 128>(p, stream);
        default: return cudaErrorInvalidValue;
      }
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kvstream
