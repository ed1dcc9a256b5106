// LaunchDenseDecode: validates Params, then one switch over (dtype, head_dim)
// picks the instantiated launcher (inst/). Never allocates, syncs or prints.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/dense/dense_decode.h"
#include "kernels/dense/inst/dense_decode_inst.h"

namespace kvstream {
namespace {

using dense_decode_detail::DenseDecodeOccupancyTyped;
using dense_decode_detail::LaunchDenseDecodeTyped;

// Calls f.template operator()<T, D>() for the built (dtype, head_dim) pairs.
template <class F>
cudaError_t DispatchDtypeHeadDim(KvDType dtype, int head_dim, F&& f) {
  switch (dtype) {
    case KvDType::kBf16:
      switch (head_dim) {
        case 64: return f.template operator()<__nv_bfloat16, 64>();
        case 128: return f.template operator()<__nv_bfloat16, 128>();
        default: return cudaErrorInvalidValue;
      }
    case KvDType::kFp16:
      switch (head_dim) {
        case 64: return f.template operator()<__half, 64>();
        case 128: return f.template operator()<__half, 128>();
        default: return cudaErrorInvalidValue;
      }
    case KvDType::kFp32:
      switch (head_dim) {
        case 64: return f.template operator()<float, 64>();
        case 128: return f.template operator()<float, 128>();
        default: return cudaErrorInvalidValue;
      }
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t LaunchDenseDecode(const DenseDecodeParams& p, cudaStream_t stream) {
  if (DenseDecodeValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  return DispatchDtypeHeadDim(p.dtype, p.head_dim, [&]<class T, int D>() {
    return LaunchDenseDecodeTyped<T, D>(p, stream);
  });
}

cudaError_t DenseDecodeOccupancy(int head_dim, KvDType dtype, int group, int* ctas_per_sm) {
  if (ctas_per_sm == nullptr || group < 1) return cudaErrorInvalidValue;
  return DispatchDtypeHeadDim(dtype, head_dim, [&]<class T, int D>() {
    return DenseDecodeOccupancyTyped<T, D>(group, ctas_per_sm);
  });
}

}  // namespace kvstream
