// akv_quantize_pack / akv_dequant kernels (akv.md §6, §7). One thread per
// (row, head, group) for quantize (two passes over g <= 128 elements) and one
// per (row, head, 32-bit code word) for dequant. Bit-exact with the twins.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/akv/akv_device.cuh"
#include "kernels/akv/akv_quant.h"
#include "kernels/cuda_check.h"

namespace kvstream {
namespace akv_detail {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void __launch_bounds__(kThreads) QuantizeKernel(const T* x, int64_t row_stride, uint8_t* codes,
                                                           uint16_t* scale, uint16_t* zero, int32_t* saturations,
                                                           int rows, int hkv, int d, int bits, int g) {
  const int gn = d / g;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  bool sat = false;
  if (item < static_cast<int64_t>(rows) * hkv * gn) {
    const int grp = static_cast<int>(item % gn);
    const int64_t slice = item / gn;  // row * hkv + head
    const int64_t r = slice / hkv, h = slice % hkv;
    const T* src = x + r * row_stride + h * d + grp * g;
    uint8_t* dst = codes + slice * (d * bits / 8) + grp * g * bits / 8;
    sat = QuantizeGroup(src, g, bits, dst, scale + slice * gn + grp, zero + slice * gn + grp);
  }
  if (saturations != nullptr) {
    const int n = __syncthreads_count(sat);
    if (threadIdx.x == 0 && n > 0) atomicAdd(saturations, n);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) DequantKernel(const uint8_t* codes, const uint16_t* scale,
                                                          const uint16_t* zero, T* x, int rows, int hkv, int d,
                                                          int bits, int g) {
  const int per = 32 / bits, words = d * bits / 32, gn = d / g;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= static_cast<int64_t>(rows) * hkv * words) return;
  const int w = static_cast<int>(item % words);
  const int64_t slice = item / words;
  const uint32_t word = reinterpret_cast<const uint32_t*>(codes + slice * (d * bits / 8))[w];
  const int e0 = w * per, grp = e0 / g;
  const float sc = HalfBitsToF(scale[slice * gn + grp]), mn = HalfBitsToF(zero[slice * gn + grp]);
  T* out = x + slice * d + e0;
  for (int e = 0; e < per; ++e) out[e] = FromF<T>(Dequant((word >> (e * bits)) & ((1u << bits) - 1u), sc, mn));
}

unsigned Blocks(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

template <class T>
cudaError_t RunQuantize(const AkvQuantizeParams& p, cudaStream_t stream) {
  const int64_t stride = p.x_row_stride ? p.x_row_stride : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  const int64_t items = static_cast<int64_t>(p.rows) * p.num_kv_heads * (p.head_dim / p.group_size);
  QuantizeKernel<T><<<Blocks(items), kThreads, 0, stream>>>(static_cast<const T*>(p.x), stride, p.codes, p.scale,
                                                            p.zero, p.saturations, p.rows, p.num_kv_heads,
                                                            p.head_dim, p.bits, p.group_size);
  return cudaGetLastError();
}

template <class T>
cudaError_t RunDequant(const AkvDequantParams& p, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(p.rows) * p.num_kv_heads * (p.head_dim * p.bits / 32);
  DequantKernel<T><<<Blocks(items), kThreads, 0, stream>>>(p.codes, p.scale, p.zero, static_cast<T*>(p.x), p.rows,
                                                           p.num_kv_heads, p.head_dim, p.bits, p.group_size);
  return cudaGetLastError();
}

bool Aligned4(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 3u) == 0; }

}  // namespace
}  // namespace akv_detail

cudaError_t LaunchAkvQuantizePack(const AkvQuantizeParams& p, cudaStream_t stream) {
  if (AkvQuantizeValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  if (!akv_detail::Aligned4(p.codes) || p.dtype == KvDType::kFp16) return cudaErrorInvalidValue;
  if (p.dtype == KvDType::kFp32) return akv_detail::RunQuantize<float>(p, stream);
  return akv_detail::RunQuantize<__nv_bfloat16>(p, stream);
}

cudaError_t LaunchAkvDequant(const AkvDequantParams& p, cudaStream_t stream) {
  if (AkvDequantValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  if (!akv_detail::Aligned4(p.codes) || p.dtype == KvDType::kFp16) return cudaErrorInvalidValue;
  if (p.dtype == KvDType::kFp32) return akv_detail::RunDequant<float>(p, stream);
  return akv_detail::RunDequant<__nv_bfloat16>(p, stream);
}

}  // namespace kvstream
