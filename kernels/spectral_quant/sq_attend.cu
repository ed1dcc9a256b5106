// K2 sq_attend launcher (kernel bodies and mapping: sq_attend_kernel.cuh for
// any Tq, sq_attend_decode.cuh for Tq == 1): compile-time dispatch on head_dim
// (64, 128) x dense segment (none, bf16, fp32) x kernel.
#include "kernels/cuda_check.h"
#include "kernels/spectral_quant/sq_attend_decode.cuh"

namespace kvstream {
namespace sq_attend_detail {
namespace {

// kDecode: DecodeKernel (Tq == 1 only), else AttendKernel.
template <int D, class TD, bool kDense, bool kDecode>
cudaError_t Run(const Args& a, cudaStream_t stream) {
  const SqAttendParams& p = a.p;
  auto* kernel = kDecode ? DecodeKernel<D, TD, kDense> : AttendKernel<D, TD, kDense>;
  const size_t smem = (kDecode ? DecodeSmemFloats(D, a.wkp, a.wvp, kDense) : SmemFloats(D, a.wkp, a.wvp)) * sizeof(float);
  // The 48 KB default bounds static + dynamic shared memory together (the
  // decode kernel has 2 KB of static tables): a dynamic size just under 48 KB
  // failed the launch with "invalid argument" (D 64, fp32 dense segment).
  if (smem > 40 * 1024) {
    KV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  const unsigned tiles = static_cast<unsigned>((a.rows + kR - 1) / kR);
  if (tiles > 65535u) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(p.num_kv_heads), tiles, static_cast<unsigned>(p.num_splits));
  kernel<<<grid, kThreads, smem, stream>>>(a);
  KV_CUDA_CHECK(cudaGetLastError());
  if (p.num_splits > 1) {
    const long long rows = static_cast<long long>(p.num_q_heads) * p.num_queries;
    MergeKernel<D><<<static_cast<unsigned>(rows), D, 0, stream>>>(p);
    KV_CUDA_CHECK(cudaGetLastError());
  }
  return cudaSuccess;
}

template <int D, bool kDecode>
cudaError_t RunDim(const Args& a, cudaStream_t stream) {
  if (a.p.num_dense == 0) return Run<D, float, false, kDecode>(a, stream);
  switch (a.p.dense_dtype) {
    case KvDType::kBf16: return Run<D, __nv_bfloat16, true, kDecode>(a, stream);
    case KvDType::kFp32: return Run<D, float, true, kDecode>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t Launch(const SqAttendParams& p, bool decode, cudaStream_t stream) {
  if (SqAttendValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_queries == 0) return cudaSuccess;
  Args a;
  a.p = p;
  a.group = p.num_q_heads / p.num_kv_heads;
  a.rows = a.group * p.num_queries;
  a.wkp = TileStride(p.num_keys > 0 ? p.k_plan.words : 1);
  a.wvp = TileStride(p.num_keys > 0 ? p.v_plan.words : 1);
  a.dstride = p.dense_stride_t ? p.dense_stride_t : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  a.scale_log2 = p.scale * kLog2e;
  decode = decode && p.num_queries == 1;
  if (decode && p.num_keys > 0) {
    // 8-byte record copies when every record starts 8-byte aligned.
    auto vec = [](const uint32_t* base, int words) {
      return words % 2 == 0 && reinterpret_cast<uintptr_t>(base) % 8 == 0 ? 2 : 1;
    };
    a.kvec = vec(p.k_records, p.k_plan.words), a.vvec = vec(p.v_records, p.v_plan.words);
    a.wkp = DecodeTileStride(p.k_plan.words, a.kvec), a.wvp = DecodeTileStride(p.v_plan.words, a.vvec);
  }
  switch (p.head_dim) {
    case 64: return decode ? RunDim<64, true>(a, stream) : RunDim<64, false>(a, stream);
    case 128: return decode ? RunDim<128, true>(a, stream) : RunDim<128, false>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace sq_attend_detail

cudaError_t LaunchSqAttend(const SqAttendParams& p, cudaStream_t stream) {
  return sq_attend_detail::Launch(p, /*decode=*/true, stream);
}

cudaError_t LaunchSqAttendLegacy(const SqAttendParams& p, cudaStream_t stream) {
  return sq_attend_detail::Launch(p, /*decode=*/false, stream);
}

}  // namespace kvstream
