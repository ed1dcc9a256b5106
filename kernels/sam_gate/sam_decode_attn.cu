// sam_decode_attn kernels (semantics and shapes: sam_decode_attn.h).
//
// Mapping: grid (S, H, B), one CTA of kWarps warps per (split, query head,
//   sequence). The split's slots are dealt to warps round robin; lane l owns
//   channels [l*kCpl, (l+1)*kCpl) (kCpl = D/32 <= gs, so one quant group per
//   lane) and dequantizes just those: x^ = fmaf(code, sc, mn), the same bits
//   as the twin. A slot's score is the warp sum of the lanes' partial dots.
// Math: q pre-scaled by scale*log2(e); per warp an online softmax in fp32
//   (m, l, acc rescaled by exp2(m_old - m_new)); warps merged through shared
//   memory; partial lse = (m + log2 l) * ln 2.
// Storage bits (4/8/16) vary per sequence (C15): one runtime switch per CTA
//   picks the body instantiated for that width.
// NOTE(sam): TODO(sam-perf): one CTA per query head re-reads a ring group's
//   rows G times (L2 hits); share the loads across the G heads of a group if
//   decode shows up in profiles. Rings are small (C <= W + 64), so it has not.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/common/device_math.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/cuda_check.h"
#include "kernels/sam_gate/sam_decode_attn.h"

namespace kvstream {
namespace sam_attn_detail {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -__builtin_huge_valf();

struct AttnArgs {
  const SamRingDesc* rings;
  const void* q;
  const void* v_new;
  void* out;
  float* partial_out;
  float* partial_lse;
  int64_t q_stride_b, v_stride_b;
  int num_heads, group, num_splits;
  float scale_log2;
};

__device__ __forceinline__ float HalfBitsToF(uint16_t b) { return __half2float(__ushort_as_half(b)); }

// This lane's kCpl channels [c0, c0 + kCpl) of one ring row as x^.
template <int D, int B>
__device__ __forceinline__ void LoadRow(const uint8_t* row, int c0, int gs, float* x) {
  constexpr int kCpl = D / 32;
  if constexpr (B == 16) {
    const uint16_t* in = reinterpret_cast<const uint16_t*>(row) + c0;
#pragma unroll
    for (int e = 0; e < kCpl; ++e) x[e] = __uint_as_float(static_cast<uint32_t>(in[e]) << 16);
  } else {
    const uint16_t* params = reinterpret_cast<const uint16_t*>(row + D * B / 8);
    const int grp = c0 / gs;
    const float sc = HalfBitsToF(params[2 * grp]), mn = HalfBitsToF(params[2 * grp + 1]);
#pragma unroll
    for (int e = 0; e < kCpl; ++e) {
      const int bit = (c0 + e) * B;
      const uint32_t code = (row[bit >> 3] >> (bit & 7)) & ((1u << B) - 1u);
      x[e] = fmaf(static_cast<float>(code), sc, mn);
    }
  }
}

struct Shared {
  float m[kWarps], l[kWarps];
  float acc[kWarps][128];
};

template <class T, int D, int B>
__device__ void AttendSplit(const AttnArgs& a, const SamRingDesc& r, int j, int b, int h, int split, Shared* sm) {
  constexpr int kCpl = D / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, c0 = lane * kCpl;
  const int C = r.window + r.sinks, rb = SamRowBytes(D, B, r.group_size);
  int beg = 0, end = 0;
  SamDecodeSplitRange(C, a.num_splits, split, &beg, &end);

  const T* qp = static_cast<const T*>(a.q) + b * a.q_stride_b + static_cast<int64_t>(h) * D + c0;
  float q[kCpl], acc[kCpl], x[kCpl];
#pragma unroll
  for (int e = 0; e < kCpl; ++e) {
    q[e] = ToF(qp[e]) * a.scale_log2;
    acc[e] = 0.0f;
  }
  float m = kNegInf, l = 0.0f;
  const uint8_t* kring = r.k + SamRowOffset(j, 0, C, rb);
  const uint8_t* vring = r.v + SamRowOffset(j, 0, C, rb);
  for (int s = beg + warp; s < end; s += kWarps) {
    // The slot's position and both rows are loaded together (rows of an
    // empty slot are in bounds, just unused): one memory latency per slot
    // instead of three dependent ones.
    const int32_t pos = r.slot_pos[s];
    float xv[kCpl];
    LoadRow<D, B>(kring + static_cast<int64_t>(s) * rb, c0, r.group_size, x);
    LoadRow<D, B>(vring + static_cast<int64_t>(s) * rb, c0, r.group_size, xv);
    if (pos < 0) continue;  // warp-uniform
    float dot = 0.0f;
#pragma unroll
    for (int e = 0; e < kCpl; ++e) dot = fmaf(q[e], x[e], dot);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    const float m_new = fmaxf(m, dot);
    const float corr = exp2f(m - m_new), p = exp2f(dot - m_new);
    l = l * corr + p;
#pragma unroll
    for (int e = 0; e < kCpl; ++e) acc[e] = fmaf(p, xv[e], acc[e] * corr);
    m = m_new;
  }
  if (lane == 0) {
    sm->m[warp] = m;
    sm->l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < kCpl; ++e) sm->acc[warp][c0 + e] = acc[e];
  __syncthreads();
  for (int c = threadIdx.x; c < D; c += kThreads) {
    float mx = kNegInf;
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm->m[w]);
    float lt = 0.0f, o = 0.0f;
    if (mx != kNegInf) {
      for (int w = 0; w < kWarps; ++w) {
        const float f = exp2f(sm->m[w] - mx);  // 0 for an idle warp (m = -inf)
        lt += sm->l[w] * f;
        o += sm->acc[w][c] * f;
      }
    }
    const float val = lt > 0.0f ? o / lt : 0.0f;
    const int64_t bh = static_cast<int64_t>(b) * a.num_heads + h;
    if (a.num_splits == 1) {
      static_cast<T*>(a.out)[bh * D + c] = FromF<T>(val);
    } else {
      const int64_t prow = bh * a.num_splits + split;
      a.partial_out[prow * D + c] = val;
      if (c == 0) a.partial_lse[prow] = lt > 0.0f ? (mx + log2f(lt)) * kLn2 : kNegInf;
    }
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) DecodeAttnKernel(AttnArgs a) {
  __shared__ Shared sm;
  // Programmatic dependent of sam_kv_write (this step's row) and parent of
  // the merge or the o-projection: launch latency hides under their tails.
  PdlWaitForPrerequisite();
  PdlLaunchDependents();
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const SamRingDesc r = a.rings[b];
  const int j = r.head_ring_group[h];
  if (j < 0) {  // dropped head (C7): split 0 writes the final output
    if (split != 0) return;
    const T* v = static_cast<const T*>(a.v_new) + b * a.v_stride_b + static_cast<int64_t>(h / a.group) * D;
    T* o = static_cast<T*>(a.out) + (static_cast<int64_t>(b) * a.num_heads + h) * D;
    for (int c = threadIdx.x; c < D; c += kThreads)
      o[c] = r.dropped_mode == SamDroppedHeadMode::kSelf ? v[c] : FromF<T>(0.0f);
    return;
  }
  switch (r.bits) {
    case 4: AttendSplit<T, D, 4>(a, r, j, b, h, split, &sm); break;
    case 8: AttendSplit<T, D, 8>(a, r, j, b, h, split, &sm); break;
    default: AttendSplit<T, D, 16>(a, r, j, b, h, split, &sm); break;
  }
}

// One CTA of D threads per (sequence, head): out = sum_s w_s o_s / sum_s w_s,
// w_s = exp(lse_s - max lse); dropped heads were written by the main kernel.
template <class T, int D>
__global__ void __launch_bounds__(D) MergeKernel(AttnArgs a) {
  PdlWaitForPrerequisite();  // the partials come from DecodeAttnKernel
  PdlLaunchDependents();
  const int h = blockIdx.x % a.num_heads, b = blockIdx.x / a.num_heads, c = threadIdx.x;
  if (a.rings[b].head_ring_group[h] < 0) return;
  const int64_t bh = static_cast<int64_t>(b) * a.num_heads + h, prow = bh * a.num_splits;
  float mx = kNegInf;
  for (int s = 0; s < a.num_splits; ++s) mx = fmaxf(mx, a.partial_lse[prow + s]);
  float lt = 0.0f, o = 0.0f;
  if (mx != kNegInf) {
    for (int s = 0; s < a.num_splits; ++s) {
      const float w = expf(a.partial_lse[prow + s] - mx);
      lt += w;
      o = fmaf(w, a.partial_out[(prow + s) * D + c], o);
    }
  }
  static_cast<T*>(a.out)[bh * D + c] = FromF<T>(lt > 0.0f ? o / lt : 0.0f);
}

template <class T, int D>
cudaError_t Run(const SamDecodeAttnParams& p, cudaStream_t stream) {
  AttnArgs a{p.rings, p.q, p.v_new, p.out, p.partial_out, p.partial_lse,
             p.q_stride_b ? p.q_stride_b : static_cast<int64_t>(p.num_heads) * D,
             p.v_stride_b ? p.v_stride_b : static_cast<int64_t>(p.num_kv_heads) * D,
             p.num_heads, p.num_heads / p.num_kv_heads, p.num_splits, p.scale * kLog2e};
  const dim3 grid(p.num_splits, p.num_heads, p.num_seqs);
  KV_CUDA_CHECK(LaunchPdl(DecodeAttnKernel<T, D>, grid, dim3(kThreads), 0, stream, a));
  if (p.num_splits > 1) {
    KV_CUDA_CHECK(LaunchPdl(MergeKernel<T, D>, dim3(p.num_seqs * p.num_heads), dim3(D), 0, stream, a));
  }
  return cudaSuccess;
}

template <class T>
cudaError_t RunD(const SamDecodeAttnParams& p, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: return Run<T, 64>(p, stream);
    case 128: return Run<T, 128>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace sam_attn_detail

cudaError_t LaunchSamDecodeAttn(const SamDecodeAttnParams& p, cudaStream_t stream) {
  using namespace sam_attn_detail;
  if (SamDecodeAttnValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_seqs == 0) return cudaSuccess;
  if (p.num_seqs > 65535) return cudaErrorInvalidValue;  // grid z limit
  switch (p.dtype) {
    case KvDType::kBf16: return RunD<__nv_bfloat16>(p, stream);
    case KvDType::kFp16: return RunD<__half>(p, stream);
    case KvDType::kFp32: return RunD<float>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kvstream
