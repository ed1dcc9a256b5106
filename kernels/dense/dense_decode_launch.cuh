// Launch logic of the dense decode kernels, templated on (element type, head
// dim); each inst/*.cu instantiates one pair. The query-group chunk GC is the
// third compile-time value, chosen here by one switch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/dense/dense_decode.h"
#include "kernels/dense/dense_decode_kernel.cuh"
#include "kernels/dense/inst/dense_decode_inst.h"

#ifndef KVSTREAM_DENSE_DECODE_PDL
#define KVSTREAM_DENSE_DECODE_PDL 1
#endif

namespace kvstream::dense_decode_detail {

inline bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <class T, int D, int GC>
cudaError_t LaunchWithChunk(const KernelArgs& a, int num_kv_heads, cudaStream_t stream) {
  using Geo = Geometry<T, D, GC>;
  const void* kernel = reinterpret_cast<const void*>(&DenseDecodeKernel<T, D, GC>);
  if constexpr (Geo::kSmemBytes > 48 * 1024) {
    KV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Geo::kSmemBytes));
  }
  // NOTE(dense): the attention grid is launched plainly, after the kernel
  // before it has drained: launched as a programmatic dependent it was placed
  // on the SMs that grid freed first, several CTAs on some SMs and none on
  // others, and at (B=1, 32K) its one wave ran ~25% longer end to end (H100:
  // 119.5 vs 131.0 tok/s). The separate merge (no split_counters) is a
  // programmatic dependent: scheduled while the attention grid runs, it waits
  // in griddepcontrol.wait, hiding its launch latency. Captures into CUDA
  // graphs as a programmatic edge. Build with -DKVSTREAM_DENSE_DECODE_PDL=0 to
  // launch it plainly (A/B timing).
  const dim3 grid(a.num_splits, num_kv_heads * a.chunks, a.batch);
  void* args[] = {const_cast<KernelArgs*>(&a)};
  KV_CUDA_CHECK(cudaLaunchKernel(kernel, grid, dim3(kThreads), args, Geo::kSmemBytes, stream));
  if (a.num_splits > 1 && a.split_counters == nullptr) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = KVSTREAM_DENSE_DECODE_PDL;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((a.batch * a.num_heads + 3) / 4);
    cfg.blockDim = dim3(128);
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    KV_CUDA_CHECK(cudaLaunchKernelEx(&cfg, DenseDecodeMergeKernel<T, D>, a));
  }
  return cudaSuccess;
}

template <class T, int D, int GC>
cudaError_t OccupancyWithChunk(int* ctas_per_sm) {
  using Geo = Geometry<T, D, GC>;
  const void* kernel = reinterpret_cast<const void*>(&DenseDecodeKernel<T, D, GC>);
  if constexpr (Geo::kSmemBytes > 48 * 1024) {
    KV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Geo::kSmemBytes));
  }
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(ctas_per_sm, kernel, kThreads, Geo::kSmemBytes);
}

// Calls f.template operator()<GC>() for the group chunk of `group`; the default
// arm (a chunk outside 1..8, impossible after DenseDecodeGroupChunk) is invalid.
template <class F>
cudaError_t DispatchGroupChunk(int group, F&& f) {
  switch (DenseDecodeGroupChunk(group)) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    case 6: return f.template operator()<6>();
    case 7: return f.template operator()<7>();
    case 8: return f.template operator()<8>();
    default: return cudaErrorInvalidValue;
  }
}
static_assert(kDenseDecodeMaxGroupChunk == 8, "DispatchGroupChunk lists chunks 1..8");

template <class T, int D>
cudaError_t LaunchDenseDecodeTyped(const DenseDecodeParams& p, cudaStream_t stream) {
  constexpr int64_t kVecElems = 16 / sizeof(T);
  KernelArgs a;
  a.q = p.q;
  a.k_pool = p.k_pool;
  a.v_pool = p.v_pool;
  a.block_table = p.block_table;
  a.seq_lens = p.seq_lens;
  a.out = p.out;
  a.partial_out = p.partial_out;
  a.partial_lse = p.partial_lse;
  a.k_new = p.k_new;
  a.v_new = p.v_new;
  a.split_counters = p.split_counters;
  a.new_stride_b = p.new_stride_b ? p.new_stride_b : static_cast<int64_t>(p.num_kv_heads) * D;
  a.q_stride_b = p.q_stride_b ? p.q_stride_b : static_cast<int64_t>(p.num_heads) * D;
  a.q_stride_h = p.q_stride_h ? p.q_stride_h : D;
  a.out_stride_b = p.out_stride_b ? p.out_stride_b : static_cast<int64_t>(p.num_heads) * D;
  a.out_stride_h = p.out_stride_h ? p.out_stride_h : D;
  a.head_stride = static_cast<int64_t>(p.page_size) * D;
  a.page_stride = a.head_stride * p.num_kv_heads;
  a.num_heads = p.num_heads;
  a.group = p.num_heads / p.num_kv_heads;
  a.chunks = a.group / DenseDecodeGroupChunk(a.group);
  a.max_blocks_per_seq = p.max_blocks_per_seq;
  a.max_tokens = p.max_blocks_per_seq * p.page_size;
  a.num_splits = p.num_splits;
  a.batch = p.batch;
  a.scale_log2 = p.scale * kLog2e;
  a.page_div = FastDivmod(p.page_size);
  a.step_in_page = p.page_size % Geometry<T, D, 1>::kTokensPerIter == 0;  // kTokensPerIter does not depend on GC

  // NOTE(dense): every 16-byte vector access assumes these; a torch slice of a
  // fused qkv tensor satisfies them when its row offsets are multiples of 16 B.
  if (!Aligned16(p.q) || !Aligned16(p.k_pool) || !Aligned16(p.v_pool) || !Aligned16(p.out) ||
      !Aligned16(p.partial_out) || !Aligned16(p.k_new) || !Aligned16(p.v_new) || a.new_stride_b % kVecElems ||
      a.q_stride_b % kVecElems || a.q_stride_h % kVecElems ||
      a.out_stride_b % kVecElems || a.out_stride_h % kVecElems)
    return cudaErrorInvalidValue;
  if (p.batch > 65535 || static_cast<int64_t>(p.num_kv_heads) * a.chunks > 65535)
    return cudaErrorInvalidValue;  // grid y/z limits

  return DispatchGroupChunk(a.group, [&]<int GC>() {
    return LaunchWithChunk<T, D, GC>(a, p.num_kv_heads, stream);
  });
}

template <class T, int D>
cudaError_t DenseDecodeOccupancyTyped(int group, int* ctas_per_sm) {
  return DispatchGroupChunk(group, [&]<int GC>() { return OccupancyWithChunk<T, D, GC>(ctas_per_sm); });
}

}  // namespace kvstream::dense_decode_detail

// One instantiation unit per (T, D): inst/dense_decode_<dtype>_d<D>.cu.
#define KVSTREAM_INSTANTIATE_DENSE_DECODE(T, D)                                                     \
  template cudaError_t kvstream::dense_decode_detail::LaunchDenseDecodeTyped<T, D>(               \
      const kvstream::DenseDecodeParams&, cudaStream_t);                                           \
  template cudaError_t kvstream::dense_decode_detail::DenseDecodeOccupancyTyped<T, D>(int, int*);
