// K2 sq_attend launcher (kernel body and mapping: sq_attend_kernel.cuh):
// compile-time dispatch on head_dim (64, 128) x dense segment (none, bf16, fp32).
#include "kernels/cuda_check.h"
#include "kernels/spectral_quant/sq_attend_kernel.cuh"

namespace kvstream {
namespace sq_attend_detail {
namespace {

template <int D, class TD, bool kDense>
cudaError_t Run(const Args& a, cudaStream_t stream) {
  const SqAttendParams& p = a.p;
  const size_t smem = SmemFloats(D, a.wkp, a.wvp) * sizeof(float);
  if (smem > 48 * 1024) {
    KV_CUDA_CHECK(cudaFuncSetAttribute(AttendKernel<D, TD, kDense>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
  }
  const unsigned tiles = static_cast<unsigned>((a.rows + kR - 1) / kR);
  if (tiles > 65535u) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(p.num_kv_heads), tiles, static_cast<unsigned>(p.num_splits));
  AttendKernel<D, TD, kDense><<<grid, kThreads, smem, stream>>>(a);
  KV_CUDA_CHECK(cudaGetLastError());
  if (p.num_splits > 1) {
    const long long rows = static_cast<long long>(p.num_q_heads) * p.num_queries;
    MergeKernel<D><<<static_cast<unsigned>(rows), D, 0, stream>>>(p);
    KV_CUDA_CHECK(cudaGetLastError());
  }
  return cudaSuccess;
}

template <int D>
cudaError_t RunDim(const Args& a, cudaStream_t stream) {
  if (a.p.num_dense == 0) return Run<D, float, false>(a, stream);
  switch (a.p.dense_dtype) {
    case KvDType::kBf16: return Run<D, __nv_bfloat16, true>(a, stream);
    case KvDType::kFp32: return Run<D, float, true>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace sq_attend_detail

cudaError_t LaunchSqAttend(const SqAttendParams& p, cudaStream_t stream) {
  using namespace sq_attend_detail;
  if (SqAttendValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_queries == 0) return cudaSuccess;
  Args a;
  a.p = p;
  a.group = p.num_q_heads / p.num_kv_heads;
  a.rows = a.group * p.num_queries;
  a.n_total = p.num_keys + p.num_dense;
  a.wkp = TileStride(p.num_keys > 0 ? p.k_plan.words : 1);
  a.wvp = TileStride(p.num_keys > 0 ? p.v_plan.words : 1);
  a.dstride = p.dense_stride_t ? p.dense_stride_t : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  a.scale_log2 = p.scale * kLog2e;
  switch (p.head_dim) {
    case 64: return RunDim<64>(a, stream);
    case 128: return RunDim<128>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kvstream
