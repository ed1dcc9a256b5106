// Launch logic of akv_mixed_attention, templated on (element type, head dim);
// each inst/*.cu instantiates one pair. Warm bits B and query vectors per CTA
// QV are the other compile-time values, chosen here by switches.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_attention_kernel.cuh"
#include "kernels/akv/akv_attention_mma.cuh"
#include "kernels/akv/inst/akv_attention_inst.h"
#include "kernels/cuda_check.h"

namespace kvstream::akv_attn_detail {

inline bool AlignedTo(const void* p, uintptr_t n) { return (reinterpret_cast<uintptr_t>(p) % n) == 0; }

template <class T, int D, int B, int QV>
cudaError_t LaunchQv(const AttnArgs& a, cudaStream_t stream) {
  const dim3 grid(a.num_splits, a.num_kv_heads * a.chunks, (a.num_rows + a.rpc - 1) / a.rpc);
  AkvAttentionKernel<T, D, B, QV><<<grid, kThreads, 0, stream>>>(a);
  KV_CUDA_CHECK(cudaGetLastError());
  if (a.num_splits > 1) {
    KV_CUDA_CHECK((LaunchAkvMerge<T, D>(a, static_cast<int64_t>(a.num_rows) * a.num_heads, stream)));
  }
  return cudaSuccess;
}

template <class T, int D, int B>
cudaError_t LaunchBits(const AttnArgs& a, int qv, cudaStream_t stream) {
  switch (qv) {
    case 1: return LaunchQv<T, D, B, 1>(a, stream);
    case 2: return LaunchQv<T, D, B, 2>(a, stream);
    case 4: return LaunchQv<T, D, B, 4>(a, stream);
    case 8: return LaunchQv<T, D, B, 8>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

template <class T, int D>
cudaError_t LaunchAkvAttentionTyped(const AkvAttentionParams& p, cudaStream_t stream) {
  constexpr int64_t kVecElems = 16 / sizeof(T);
  const AkvLayout& lay = p.layout;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, p.layer);
  AttnArgs a;
  a.q = p.q;
  a.q_pos = p.q_pos;
  a.hot_k = t.hot_k;
  a.hot_v = t.hot_v;
  a.hot_pos = t.hot_pos;
  a.warm_k = t.warm_k;
  a.warm_v = t.warm_v;
  a.wks = t.warm_k_scale;
  a.wkz = t.warm_k_zero;
  a.wvs = t.warm_v_scale;
  a.wvz = t.warm_v_zero;
  a.warm_pos = t.warm_pos;
  a.counts = t.counts;
  a.out = p.out;
  a.lse = p.lse;
  a.partial_out = p.partial_out;
  a.partial_lse = p.partial_lse;
  a.q_stride_m = p.q_stride_m ? p.q_stride_m : static_cast<int64_t>(p.num_heads) * D;
  a.q_stride_h = p.q_stride_h ? p.q_stride_h : D;
  a.num_rows = p.num_rows;
  a.num_heads = p.num_heads;
  a.num_kv_heads = lay.num_kv_heads;
  a.group = p.num_heads / lay.num_kv_heads;
  a.chunks = (a.group + 7) / 8;
  a.hc = (a.group + a.chunks - 1) / a.chunks;  // <= 8
  // Decode: the fewest vectors that cover a chunk; prefill: 8 vectors, so
  // 8 / hc query rows share each K/V load.
  int qv = 1;
  while (qv < a.hc) qv *= 2;
  if (p.num_rows > 1) qv = 8;
  a.rpc = qv / a.hc;
  a.num_splits = p.num_splits;
  a.hot_cap = lay.hot_capacity;
  a.warm_cap = lay.warm_capacity;
  a.group_size = lay.group_size;
  a.groups = lay.Groups();
  a.scale_log2 = p.scale * kLog2e;

  // NOTE(akv): every 16-byte vector access assumes these (per-layer offsets of
  // the tiers keep any 16-byte aligned base aligned: rows are >= 128 bytes).
  if (p.batch != nullptr) {  // batched decode: the tensor-core kernel only, rows' tiers as the caller vouches
    if (!std::is_same_v<T, __nv_bfloat16> || p.path == AkvAttnPath::kCudaCore || p.num_rows > kAkvAttnMaxBatch)
      return cudaErrorInvalidValue;
  }
  if (!AlignedTo(p.q, 16) || !AlignedTo(p.out, 16) || !AlignedTo(t.hot_k, 16) || !AlignedTo(t.hot_v, 16) ||
      !AlignedTo(p.partial_out, 16) || !AlignedTo(t.warm_k, 8) || !AlignedTo(t.warm_v, 8) ||
      a.q_stride_m % kVecElems || a.q_stride_h % kVecElems)
    return cudaErrorInvalidValue;
  if (static_cast<int64_t>(lay.num_kv_heads) * a.chunks > 65535 || (p.num_rows + a.rpc - 1) / a.rpc > 65535)
    return cudaErrorInvalidValue;  // grid y/z limits
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if (p.path != AkvAttnPath::kCudaCore && akv_mma_detail::MmaApplies(a, p.batch, D))
      return akv_mma_detail::LaunchMma<D>(a, p.batch, lay.warm_bits, stream);
  }
  if (p.path == AkvAttnPath::kTensorCore || p.batch != nullptr) return cudaErrorInvalidValue;  // does not apply here
  switch (lay.warm_bits) {
    case 2: return LaunchBits<T, D, 2>(a, qv, stream);
    case 4: return LaunchBits<T, D, 4>(a, qv, stream);
    case 8: return LaunchBits<T, D, 8>(a, qv, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kvstream::akv_attn_detail

// One instantiation unit per (T, D): inst/akv_attention_<dtype>_d<D>.cu.
#define KVSTREAM_INSTANTIATE_AKV_ATTENTION(T, D)                                               \
  template cudaError_t kvstream::akv_attn_detail::LaunchAkvAttentionTyped<T, D>(             \
      const kvstream::AkvAttentionParams&, cudaStream_t);
