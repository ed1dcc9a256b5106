// akv_cold_append (akv.md §4 step 7; contract in akv_manage.h): one CTA per
// layer copies the layer's staged rows into its warm tail, then thread 0
// moves n_warm. Every thread reads n_warm before the barrier that precedes
// the update, so the CTA agrees on the slots it writes.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/akv/akv_manage.h"
#include "kernels/cuda_check.h"

namespace kvstream {
namespace akv_detail {
namespace {

constexpr int kColdAppendThreads = 256;

template <class E>
__device__ void CopyElems(E* dst, const E* src, int64_t n) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

__global__ void __launch_bounds__(kColdAppendThreads) ColdAppendKernel(const AkvColdAppendParams p) {
  const AkvLayout& lay = p.layout;
  const int l = blockIdx.x, S = p.stage.Rows(lay);
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, l);
  const int n_warm = t.counts[kAkvNWarm];
  const int take = AkvColdTakeRows(p, p.rows[l], n_warm);
  const int64_t code_row = int64_t(lay.num_kv_heads) * lay.CodeBytes();
  const int64_t group_row = int64_t(lay.num_kv_heads) * lay.Groups();
  const int64_t s0 = int64_t(l) * S;
  CopyElems(t.warm_k + n_warm * code_row, p.stage.k + s0 * code_row, take * code_row);
  CopyElems(t.warm_v + n_warm * code_row, p.stage.v + s0 * code_row, take * code_row);
  CopyElems(t.warm_k_scale + n_warm * group_row, p.stage.k_scale + s0 * group_row, take * group_row);
  CopyElems(t.warm_k_zero + n_warm * group_row, p.stage.k_zero + s0 * group_row, take * group_row);
  CopyElems(t.warm_v_scale + n_warm * group_row, p.stage.v_scale + s0 * group_row, take * group_row);
  CopyElems(t.warm_v_zero + n_warm * group_row, p.stage.v_zero + s0 * group_row, take * group_row);
  for (int i = threadIdx.x; i < take; i += blockDim.x) {
    t.warm_pos[n_warm + i] = p.stage.pos[s0 + i];
    t.warm_score[n_warm + i] = p.stage.score[s0 + i];
    t.warm_a[n_warm + i] = p.stage.score[s0 + i];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    t.counts[kAkvNWarm] = n_warm + take;
    t.counts[kAkvTotColdTaken] += take;
  }
}

}  // namespace
}  // namespace akv_detail

cudaError_t LaunchAkvColdAppend(const AkvColdAppendParams& p, cudaStream_t stream) {
  if (AkvColdAppendValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_layers == 0) return cudaSuccess;
  akv_detail::ColdAppendKernel<<<p.num_layers, akv_detail::kColdAppendThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
