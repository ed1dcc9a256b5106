// akv_score_update (akv.md §4 step 3; formulas in akv_manage.h).
//
// ScoreRowsKernel: grid over C_hot + C_warm "virtual" rows (hot then warm;
// rows past n_hot + n_warm idle), block 128 threads = TR rows x Hkv KV heads.
// Thread (row j, KV head) recomputes z = scale * q_ih . k^_j for the G query
// heads of its KV head and the query rows in play (last row: IMPORTANCE; all:
// HYBRID), reading K in 8-element chunks (warm: dequantized in registers with
// the exact x^), and sums exp(z - lse_ih). Per-head partials are added in a
// fixed order through shared memory (deterministic), then one thread per row
// updates s / w / warm_a. HYBRID also records max u and a bitmap of positions;
// RankScanKernel turns the bitmap into prefix popcounts and HybridFinalize-
// Kernel writes s = aw * u / max(umax, 1e-10) + rw * rank / (V - 1).
// A decode step (M = 1, G <= 8) takes ScoreDecodeKernel instead
// (akv_score_decode.cuh): the same sums with coalesced K reads.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_device.cuh"
#include "kernels/akv/akv_manage.h"
#include "kernels/akv/akv_score_decode.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/common/smem_attribute.cuh"
#include "kernels/cuda_check.h"

namespace kvstream {
namespace akv_detail {
namespace {

constexpr int kScoreThreads = 128;
constexpr int kHeadChunk = 8;  // query heads accumulated at once per thread

struct ScoreArgs {
  AkvScoreParams p;
  AkvTiers t;  // moved to the layer
  int64_t q_stride_m = 0, q_stride_h = 0;
  int rows_per_cta = 0;  // TR = 128 / Hkv
  uint32_t words = 0;    // bitmap words (HYBRID)
};

// 8 consecutive elements of T as floats (16- or 32-byte aligned).
template <class T>
__device__ __forceinline__ void Load8(const T* src, float* f) {
  if constexpr (sizeof(T) == 2) {
    Vec16<T>::Load(__ldg(reinterpret_cast<const uint4*>(src)), f);
  } else {
    Vec16<T>::Load(__ldg(reinterpret_cast<const uint4*>(src)), f);
    Vec16<T>::Load(__ldg(reinterpret_cast<const uint4*>(src) + 1), f + 4);
  }
}

// 8 dequantized warm values of slice `slice`, channels d0..d0+7.
__device__ __forceinline__ void WarmLoad8(const AkvLayout& lay, const uint8_t* codes, const uint16_t* scale,
                                          const uint16_t* zero, int64_t slice, int d0, float* f) {
  const int bits = lay.warm_bits;
  const uint8_t* p = codes + slice * lay.CodeBytes() + d0 * bits / 8;
  const uint64_t w = bits == 2 ? LoadBytes<2>(p) : (bits == 4 ? LoadBytes<4>(p) : LoadBytes<8>(p));
  const int64_t gi = slice * lay.Groups() + d0 / lay.group_size;
  const float sc = HalfBitsToF(scale[gi]), mn = HalfBitsToF(zero[gi]);
#pragma unroll
  for (int e = 0; e < 8; ++e) f[e] = Dequant(static_cast<uint32_t>(w >> (e * bits)) & ((1u << bits) - 1u), sc, mn);
}

template <class T>
__global__ void __launch_bounds__(kScoreThreads) ScoreRowsKernel(const ScoreArgs a) {
  __shared__ float part_all[kScoreThreads], part_last[kScoreThreads];
  const AkvScoreParams& p = a.p;
  const AkvLayout& lay = p.layout;
  const AkvTiers& t = a.t;
  const int hkv = lay.num_kv_heads, D = lay.head_dim, hq = p.num_heads, group = hq / hkv, M = p.num_rows;
  const int r_local = threadIdx.x / hkv, kvh = threadIdx.x % hkv;
  KeepLastQuery<T>(p, a.q_stride_m, a.q_stride_h);
  const int n_hot = min(max(t.counts[kAkvNHot], 0), lay.hot_capacity);
  const int n_warm = min(max(t.counts[kAkvNWarm], 0), lay.warm_capacity);
  const int j = blockIdx.x * a.rows_per_cta + r_local;
  const bool active = r_local < a.rows_per_cta && j < n_hot + n_warm;
  const bool hybrid = p.mode == AkvScoring::kHybrid;

  float acc_all = 0.0f, acc_last = 0.0f;
  int32_t pos = 0;
  if (active) {
    const bool warm = j >= n_hot;
    const int row = warm ? j - n_hot : j;
    pos = warm ? t.warm_pos[row] : t.hot_pos[row];
    const int64_t slice = static_cast<int64_t>(row) * hkv + kvh;
    const T* hot_row = static_cast<const T*>(t.hot_k) + slice * D;
    for (int i = hybrid ? 0 : M - 1; i < M; ++i) {
      if (pos > p.q_pos[i]) continue;  // causal: row i never saw token j
      for (int h0 = 0; h0 < group; h0 += kHeadChunk) {
        float dot[kHeadChunk];
#pragma unroll
        for (int c = 0; c < kHeadChunk; ++c) dot[c] = 0.0f;
        for (int d0 = 0; d0 < D; d0 += 8) {
          float kf[8], qf[8];
          if (warm) {
            WarmLoad8(lay, t.warm_k, t.warm_k_scale, t.warm_k_zero, slice, d0, kf);
          } else {
            Load8(hot_row + d0, kf);
          }
#pragma unroll
          for (int c = 0; c < kHeadChunk; ++c) {
            if (h0 + c >= group) break;
            const int h = kvh * group + h0 + c;
            Load8(static_cast<const T*>(p.q) + i * a.q_stride_m + h * a.q_stride_h + d0, qf);
#pragma unroll
            for (int e = 0; e < 8; ++e) dot[c] = fmaf(qf[e], kf[e], dot[c]);
          }
        }
#pragma unroll
        for (int c = 0; c < kHeadChunk; ++c) {
          if (h0 + c >= group) break;
          const float lse = p.lse[static_cast<int64_t>(i) * hq + kvh * group + h0 + c];
          if (!isfinite(lse)) continue;  // the row saw no token
          const float pr = expf(dot[c] * p.scale - lse);
          acc_all += pr;
          if (i == M - 1) acc_last += pr;
        }
      }
    }
  }
  part_all[threadIdx.x] = acc_all;
  part_last[threadIdx.x] = acc_last;
  __syncthreads();
  if (!active || kvh != 0) return;
  float a_all = 0.0f, a_last = 0.0f;
  for (int k = 0; k < hkv; ++k) {  // fixed order: deterministic
    a_all += part_all[threadIdx.x + k];
    a_last += part_last[threadIdx.x + k];
  }
  StoreRowScore(p, t, a.words, j, n_hot, pos, j >= n_hot ? t.warm_score[j - n_hot] : t.hot_score[j], a_all / hq,
                a_last / hq);
}

// prefix[w] = popcount of bitmap words [0, w); one CTA.
__global__ void __launch_bounds__(1024) RankScanKernel(uint32_t* ws, uint32_t words) {
  __shared__ uint32_t warp_tot[32];
  __shared__ uint32_t carry;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (uint32_t base = 0; base < words; base += blockDim.x) {
    const uint32_t w = base + threadIdx.x;
    const uint32_t c = w < words ? __popc(ws[w]) : 0;
    uint32_t incl = c;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const uint32_t o = __shfl_up_sync(0xffffffffu, incl, off);
      if (lane >= off) incl += o;
    }
    if (lane == 31) warp_tot[warp] = incl;
    __syncthreads();
    uint32_t before = carry;
    for (int k = 0; k < warp; ++k) before += warp_tot[k];
    if (w < words) ws[words + w] = before + incl - c;
    __syncthreads();
    if (threadIdx.x == blockDim.x - 1) carry = before + incl;
    __syncthreads();
  }
}

__global__ void __launch_bounds__(256) HybridFinalizeKernel(const ScoreArgs a) {
  const AkvTiers& t = a.t;
  const int n_hot = min(max(t.counts[kAkvNHot], 0), a.p.layout.hot_capacity);
  const int n_warm = min(max(t.counts[kAkvNWarm], 0), a.p.layout.warm_capacity);
  const int n = n_hot + n_warm;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const bool warm = j >= n_hot;
  const int32_t pos = warm ? t.warm_pos[j - n_hot] : t.hot_pos[j];
  float* s = warm ? t.warm_score + (j - n_hot) : t.hot_score + j;
  const uint32_t* ws = a.p.workspace;
  uint32_t rank = 0;
  if (pos >= 0 && static_cast<uint32_t>(pos) < a.words * 32u) {
    const uint32_t w = static_cast<uint32_t>(pos) >> 5;
    rank = ws[a.words + w] + __popc(ws[w] & ((1u << (pos & 31)) - 1u));
  }
  const float umax = __uint_as_float(ws[2 * a.words]);
  const float r = n > 1 ? static_cast<float>(rank) / static_cast<float>(n - 1) : 1.0f;
  *s = a.p.attention_weight * *s / fmaxf(umax, 1e-10f) + a.p.recency_weight * r;
}

constexpr int kScoreDecodeSmemCap = 200 * 1024;  // the dynamic shared memory the decode kernel may ask for

template <class T, int D, int B>
void LaunchScoreDecode(const AkvScoreParams& p, const ScoreArgs& a, unsigned grid, int smem, cudaStream_t stream) {
  // A failure here is the runtime's last error, which the caller checks.
  if (AllowDynamicSmemOnce<ScoreDecodeKernel<T, D, B>>(kScoreDecodeSmemCap) != cudaSuccess) return;
  ScoreDecodeKernel<T, D, B><<<grid, p.layout.num_kv_heads * 32, smem, stream>>>(p, a.t, a.q_stride_h, a.words);
}

template <class T, int D>
bool LaunchScoreDecodeBits(const AkvScoreParams& p, const ScoreArgs& a, unsigned grid, int smem,
                           cudaStream_t stream) {
  switch (p.layout.warm_bits) {
    case 2: LaunchScoreDecode<T, D, 2>(p, a, grid, smem, stream); return true;
    case 4: LaunchScoreDecode<T, D, 4>(p, a, grid, smem, stream); return true;
    case 8: LaunchScoreDecode<T, D, 8>(p, a, grid, smem, stream); return true;
    default: return false;
  }
}

// Launches ScoreDecodeKernel where it applies (one query row, G <= 8,
// Hkv <= 16, the tile fits, 16-byte aligned warm codes); false otherwise.
template <class T>
bool ScoreDecode(const AkvScoreParams& p, const ScoreArgs& a, cudaStream_t stream) {
  const AkvLayout& lay = p.layout;
  const int hkv = lay.num_kv_heads, D = lay.head_dim;
  const int smem = ScoreDecodeSmemBytes(p.num_heads, hkv, D, D * static_cast<int>(sizeof(T)));
  if (p.num_rows != 1 || p.num_heads / hkv > kScoreDecodeMaxGroup || hkv > kScoreDecodeMaxKvHeads ||
      smem > kScoreDecodeSmemCap || (reinterpret_cast<uintptr_t>(a.t.warm_k) & 15u) || lay.CodeBytes() % 16)
    return false;
  const auto tiles = [](int rows) { return (rows + kScoreDecodeRows - 1) / kScoreDecodeRows; };
  const auto grid = static_cast<unsigned>(tiles(lay.hot_capacity) + tiles(lay.warm_capacity));
  if (D == 64) return LaunchScoreDecodeBits<T, 64>(p, a, grid, smem, stream);
  if (D == 128) return LaunchScoreDecodeBits<T, 128>(p, a, grid, smem, stream);
  return false;
}

template <class T>
cudaError_t Score(const AkvScoreParams& p, cudaStream_t stream) {
  ScoreArgs a;
  a.p = p;
  a.t = AkvTiersAtLayer(p.tiers, p.layout, p.layer);
  const int D = p.layout.head_dim;
  a.q_stride_m = p.q_stride_m ? p.q_stride_m : static_cast<int64_t>(p.num_heads) * D;
  a.q_stride_h = p.q_stride_h ? p.q_stride_h : D;
  a.rows_per_cta = kScoreThreads / p.layout.num_kv_heads;
  constexpr int64_t kVecElems = 16 / sizeof(T);
  if ((reinterpret_cast<uintptr_t>(p.q) & 15u) || (reinterpret_cast<uintptr_t>(a.t.hot_k) & 15u) ||
      a.q_stride_m % kVecElems || a.q_stride_h % kVecElems || a.rows_per_cta < 1)
    return cudaErrorInvalidValue;
  const bool hybrid = p.mode == AkvScoring::kHybrid;
  if (hybrid) {
    if (p.workspace == nullptr || p.max_positions < 1) return cudaErrorInvalidValue;
    a.words = static_cast<uint32_t>((p.max_positions + 31) / 32);
    KV_CUDA_CHECK(cudaMemsetAsync(p.workspace, 0, AkvScoreWorkspaceWords(p.max_positions) * 4, stream));
  }
  const int64_t rows = static_cast<int64_t>(p.layout.hot_capacity) + p.layout.warm_capacity;
  if (!ScoreDecode<T>(p, a, stream)) {
    ScoreRowsKernel<T><<<static_cast<unsigned>((rows + a.rows_per_cta - 1) / a.rows_per_cta), kScoreThreads, 0,
                         stream>>>(a);
  }
  KV_CUDA_CHECK(cudaGetLastError());
  if (hybrid) {
    RankScanKernel<<<1, 1024, 0, stream>>>(p.workspace, a.words);
    KV_CUDA_CHECK(cudaGetLastError());
    HybridFinalizeKernel<<<static_cast<unsigned>((rows + 255) / 256), 256, 0, stream>>>(a);
    KV_CUDA_CHECK(cudaGetLastError());
  }
  return cudaSuccess;
}

}  // namespace
}  // namespace akv_detail

cudaError_t LaunchAkvScoreUpdate(const AkvScoreParams& p, cudaStream_t stream) {
  if (AkvScoreValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (!AkvCudaSupports(p.layout.head_dim, p.layout.dtype, p.layout.warm_bits)) return cudaErrorInvalidValue;
  if (p.num_rows == 0 || p.mode == AkvScoring::kFifo) return cudaSuccess;
  if (p.layout.dtype == KvDType::kFp32) return akv_detail::Score<float>(p, stream);
  return akv_detail::Score<__nv_bfloat16>(p, stream);
}

}  // namespace kvstream
