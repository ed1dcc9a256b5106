// K1 sq_quantize_pack and K3 sq_dequant kernels (semantics and shapes:
// sq_quantize.h; spectral_quant.md §4.3, §7).
//
// Mapping: one warp per (token, KV head), kWarps warps per CTA, the unit
// tables in shared memory. Lane l owns dimensions l, l + 32, ... (coalesced
// z / plan reads). K1 ORs each code into a per-warp shared record (a field may
// straddle two words) and then stores the whole record, padding included.
// Bit parity with the twin: u = __fdiv_rn(z, s) (IEEE, whatever the flags)
// and a branch-free binary search counting the midpoints < u, which equals
// the twin's lower_bound for every non-NaN u (NaN gives 0 in both).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/spectral_quant/sq_quantize.h"

namespace kvstream {
namespace sq_quant_detail {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRecWords = kSqMaxRecordWords + 1;

__device__ __forceinline__ void LoadTables(const float* g, float* s) {
  for (int i = threadIdx.x; i < kSqTableFloats; i += kThreads) s[i] = g[i];
}

// #{m in M_w : m < u}: M_w has 2^w - 1 ascending entries.
__device__ __forceinline__ uint32_t CodeOf(const float* mids, int w, float u) {
  uint32_t code = 0;
  for (int step = 1 << (w - 1); step >= 1; step >>= 1) {
    if (mids[code + step - 1] < u) code += step;
  }
  return code;
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <int D>
__global__ void __launch_bounds__(kThreads) QuantizePackKernel(SqQuantizePackParams p, int64_t zs) {
  constexpr int kDpl = D / 32;  // dimensions per lane
  __shared__ float tab[kSqTableFloats];
  __shared__ uint32_t rec_s[kWarps][kRecWords];
  __shared__ uint32_t sign_s[kWarps][4];
  LoadTables(p.tables, tab);
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int H = p.num_kv_heads, W = p.plan.words;
  const long long item = static_cast<long long>(blockIdx.x) * kWarps + warp;
  if (item >= static_cast<long long>(p.num_tokens) * H) return;  // no block-wide sync below
  const int t = static_cast<int>(item / H), h = static_cast<int>(item % H);
  const float* z = p.z + t * zs + static_cast<int64_t>(h) * D;
  const long long orow = item + (p.first_token ? static_cast<long long>(*p.first_token) * H : 0);  // output row
  uint32_t* rs = rec_s[warp];
  for (int k = lane; k < kRecWords; k += 32) rs[k] = 0u;
  __syncwarp();
  float err[kDpl];
#pragma unroll
  for (int e = 0; e < kDpl; ++e) {
    const int i = lane + 32 * e;
    const int w = p.plan.width[h * D + i], off = p.plan.bit_offset[h * D + i];
    const float s = p.plan.scale[h * D + i];
    const float zi = z[i];
    const uint32_t code = CodeOf(tab + kSqCentroidFloats + SqMidpointOffset(w), w, __fdiv_rn(zi, s));
    const int k = off >> 5, sh = off & 31;
    atomicOr(&rs[k], code << sh);
    if (sh + w > 32) atomicOr(&rs[k + 1], code >> (32 - sh));
    err[e] = zi - __fmul_rn(s, tab[SqCentroidOffset(w) + code]);  // no FMA contraction: the twin rounds z^ first
  }
  __syncwarp();
  uint32_t* out = p.records + orow * W;
  for (int k = lane; k < W; k += 32) out[k] = rs[k];
  if (p.s_prime == nullptr) return;
  // QJL (§4.3 step 2): r_norm = ||z - z^||, sign bit m = (S' (z - z^))_m >= 0.
  float r2 = 0.0f;
#pragma unroll
  for (int e = 0; e < kDpl; ++e) r2 = fmaf(err[e], err[e], r2);
  r2 = WarpSum(r2);
  if (lane == 0) p.r_norm[orow] = __half_as_ushort(__float2half_rn(sqrtf(r2)));
  const int de = min(p.plan.d_eff[h], 32 * p.sign_words);
  const float* sp = p.s_prime + static_cast<int64_t>(h) * D * D;
  if (lane < 4) sign_s[warp][lane] = 0u;
  __syncwarp();
  for (int m = 0; m < de; ++m) {
    float a = 0.0f;
#pragma unroll
    for (int e = 0; e < kDpl; ++e) a = fmaf(sp[static_cast<int64_t>(m) * D + lane + 32 * e], err[e], a);
    a = WarpSum(a);
    if (lane == 0 && a >= 0.0f) sign_s[warp][m >> 5] |= 1u << (m & 31);
  }
  __syncwarp();
  if (lane < p.sign_words) p.signs[orow * p.sign_words + lane] = sign_s[warp][lane];
}

template <int D>
__global__ void __launch_bounds__(kThreads) DequantKernel(SqDequantParams p) {
  constexpr int kDpl = D / 32;
  __shared__ float tab[kSqCentroidFloats];
  for (int i = threadIdx.x; i < kSqCentroidFloats; i += kThreads) tab[i] = p.tables[i];
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int H = p.num_kv_heads;
  const long long item = static_cast<long long>(blockIdx.x) * kWarps + warp;
  if (item >= static_cast<long long>(p.num_tokens) * H) return;
  const int h = static_cast<int>(item % H);
  const uint32_t* rec = p.records + item * p.plan.words;
  float* out = p.zhat + item * D;
#pragma unroll
  for (int e = 0; e < kDpl; ++e) {
    const int i = lane + 32 * e;
    const int w = p.plan.width[h * D + i];
    const uint32_t code = SqReadField(rec, p.plan.bit_offset[h * D + i], w);
    out[i] = p.plan.scale[h * D + i] * tab[SqCentroidOffset(w) + code];
  }
}

unsigned GridFor(int tokens, int heads) {
  const long long items = static_cast<long long>(tokens) * heads;
  return static_cast<unsigned>((items + kWarps - 1) / kWarps);
}

}  // namespace
}  // namespace sq_quant_detail

cudaError_t LaunchSqQuantizePack(const SqQuantizePackParams& p, cudaStream_t stream) {
  using namespace sq_quant_detail;
  if (SqQuantizePackValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_tokens == 0) return cudaSuccess;
  const int64_t zs = p.z_stride_t ? p.z_stride_t : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  const unsigned grid = GridFor(p.num_tokens, p.num_kv_heads);
  switch (p.head_dim) {
    case 64: QuantizePackKernel<64><<<grid, kThreads, 0, stream>>>(p, zs); break;
    case 128: QuantizePackKernel<128><<<grid, kThreads, 0, stream>>>(p, zs); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchSqDequant(const SqDequantParams& p, cudaStream_t stream) {
  using namespace sq_quant_detail;
  if (SqDequantValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_tokens == 0) return cudaSuccess;
  const unsigned grid = GridFor(p.num_tokens, p.num_kv_heads);
  switch (p.head_dim) {
    case 64: DequantKernel<64><<<grid, kThreads, 0, stream>>>(p); break;
    case 128: DequantKernel<128><<<grid, kThreads, 0, stream>>>(p); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace kvstream
