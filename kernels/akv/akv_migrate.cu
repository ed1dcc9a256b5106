// akv_append (akv.md §4 step 1) and akv_migrate (steps 4-6 applied).
//
// Migrate: grid (Hkv, 2 = K|V, L), one CTA per slice of a layer's rows; the
// (head 0, K) CTA also moves the per-row metadata (pos, s, w, a). A CTA only
// touches its own slice, so CTAs never race; inside a CTA the order is
//   1. demoted hot rows -> quantized into warm tail slots n_warm + k,
//      promoted warm rows -> dequantized into hot tail slots n_hot + k
//   2. cold-listed rows (may be tail rows of 1) -> stage row k
//   3. stable in-place compaction of hot (minus demoted) and warm (minus
//      promoted and cold), left-moving chunk by chunk (CompactRows)
// with barriers between. Counts are read by every CTA, so they are updated
// afterwards by a one-CTA commit kernel (stream order; graph capturable).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/akv/akv_attention.h"
#include "kernels/akv/akv_device.cuh"
#include "kernels/akv/akv_manage.h"
#include "kernels/cuda_check.h"

namespace kvstream {
namespace akv_detail {
namespace {

constexpr int kMigrateThreads = 256;

template <class T>
__global__ void __launch_bounds__(kMigrateThreads) MigrateKernel(const AkvMigrateParams p) {
  const AkvLayout& lay = p.layout;
  const int h = blockIdx.x, l = blockIdx.z;
  const bool is_k = blockIdx.y == 0, meta = is_k && h == 0;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, l);
  const int32_t* cnt = t.counts;
  const int32_t* demote = p.lists.demote + static_cast<int64_t>(l) * lay.hot_capacity;
  const int32_t* promote = p.lists.promote + static_cast<int64_t>(l) * lay.warm_capacity;
  const int32_t* cold = p.lists.cold + static_cast<int64_t>(l) * lay.warm_capacity;
  const int n_hot = cnt[kAkvNHot], n_warm = cnt[kAkvNWarm];
  const int nd = cnt[kAkvNDemote], np = cnt[kAkvNPromote], nc = cnt[kAkvNCold];
  const int D = lay.head_dim, hkv = lay.num_kv_heads, bits = lay.warm_bits, g = lay.group_size;
  const int gn = lay.Groups(), cb = lay.CodeBytes(), words = cb / 4, per = 32 / bits;

  T* hot = static_cast<T*>(is_k ? t.hot_k : t.hot_v);
  uint8_t* codes = is_k ? t.warm_k : t.warm_v;
  uint16_t* scale = is_k ? t.warm_k_scale : t.warm_v_scale;
  uint16_t* zero = is_k ? t.warm_k_zero : t.warm_v_zero;

  // 1a. demoted hot rows -> warm tail (one thread per group).
  bool sat = false;
  for (int item = threadIdx.x; item < nd * gn; item += blockDim.x) {
    const int k = item / gn, grp = item % gn;
    const int64_t src = static_cast<int64_t>(demote[k]) * hkv + h, dst = static_cast<int64_t>(n_warm + k) * hkv + h;
    sat |= QuantizeGroup(hot + src * D + grp * g, g, bits, codes + dst * cb + grp * g * bits / 8,
                         scale + dst * gn + grp, zero + dst * gn + grp);
  }
  // 1b. promoted warm rows -> hot tail (one thread per 32-bit code word).
  for (int item = threadIdx.x; item < np * words; item += blockDim.x) {
    const int k = item / words, w = item % words;
    const int64_t src = static_cast<int64_t>(promote[k]) * hkv + h, dst = static_cast<int64_t>(n_hot + k) * hkv + h;
    const uint32_t word = reinterpret_cast<const uint32_t*>(codes + src * cb)[w];
    const int e0 = w * per, grp = e0 / g;
    const float sc = HalfBitsToF(scale[src * gn + grp]), mn = HalfBitsToF(zero[src * gn + grp]);
    for (int e = 0; e < per; ++e)
      hot[dst * D + e0 + e] = FromF<T>(Dequant((word >> (e * bits)) & ((1u << bits) - 1u), sc, mn));
  }
  if (meta) {
    for (int k = threadIdx.x; k < nd; k += blockDim.x) {
      t.warm_pos[n_warm + k] = t.hot_pos[demote[k]];
      t.warm_score[n_warm + k] = t.hot_score[demote[k]];
      t.warm_a[n_warm + k] = 0.0f;
    }
    for (int k = threadIdx.x; k < np; k += blockDim.x) {
      t.hot_pos[n_hot + k] = t.warm_pos[promote[k]];
      t.hot_score[n_hot + k] = 1.0f;
    }
  }
  const int n_sat = __syncthreads_count(sat);  // also orders 1 before 2
  if (threadIdx.x == 0 && n_sat > 0) atomicAdd(t.counts + kAkvTotQuantSaturations, n_sat);

  // 2. rows leaving warm -> stage (codes unchanged).
  if (p.stage.k != nullptr) {
    const int64_t base = static_cast<int64_t>(l) * p.stage.Rows(lay);
    const int ns = nc < p.stage.Rows(lay) ? nc : p.stage.Rows(lay);
    uint8_t* s_codes = is_k ? p.stage.k : p.stage.v;
    uint16_t* s_scale = is_k ? p.stage.k_scale : p.stage.v_scale;
    uint16_t* s_zero = is_k ? p.stage.k_zero : p.stage.v_zero;
    for (int item = threadIdx.x; item < ns * words; item += blockDim.x) {
      const int k = item / words, w = item % words;
      const int64_t src = static_cast<int64_t>(cold[k]) * hkv + h, dst = (base + k) * hkv + h;
      reinterpret_cast<uint32_t*>(s_codes + dst * cb)[w] = reinterpret_cast<const uint32_t*>(codes + src * cb)[w];
    }
    for (int item = threadIdx.x; item < ns * gn; item += blockDim.x) {
      const int k = item / gn, grp = item % gn;
      const int64_t src = static_cast<int64_t>(cold[k]) * hkv + h, dst = (base + k) * hkv + h;
      s_scale[dst * gn + grp] = scale[src * gn + grp];
      s_zero[dst * gn + grp] = zero[src * gn + grp];
    }
    if (meta) {
      for (int k = threadIdx.x; k < ns; k += blockDim.x) {
        p.stage.pos[base + k] = t.warm_pos[cold[k]];
        p.stage.score[base + k] = t.warm_score[cold[k]];
      }
    }
  }
  __syncthreads();

  // 3. stable compaction (hot rows are >= 128 bytes, code slices >= 16 bytes).
  const int hot_u4 = D * static_cast<int>(sizeof(T)) / 16;
  CompactRows(reinterpret_cast<uint4*>(hot + static_cast<int64_t>(h) * D), static_cast<int64_t>(hkv) * hot_u4, hot_u4,
              n_hot + np, demote, nd, nullptr, 0);
  const int code_u4 = cb / 16;
  CompactRows(reinterpret_cast<uint4*>(codes + static_cast<int64_t>(h) * cb), static_cast<int64_t>(hkv) * code_u4,
              code_u4, n_warm + nd, promote, np, cold, nc);
  CompactRows(scale + static_cast<int64_t>(h) * gn, static_cast<int64_t>(hkv) * gn, gn, n_warm + nd, promote, np, cold, nc);
  CompactRows(zero + static_cast<int64_t>(h) * gn, static_cast<int64_t>(hkv) * gn, gn, n_warm + nd, promote, np, cold, nc);
  if (meta) {
    CompactRows(t.hot_pos, 1, 1, n_hot + np, demote, nd, nullptr, 0);
    CompactRows(t.hot_score, 1, 1, n_hot + np, demote, nd, nullptr, 0);
    CompactRows(t.warm_pos, 1, 1, n_warm + nd, promote, np, cold, nc);
    CompactRows(t.warm_score, 1, 1, n_warm + nd, promote, np, cold, nc);
    CompactRows(t.warm_a, 1, 1, n_warm + nd, promote, np, cold, nc);
  }
}

// Applies the moves to the counters of every layer (after MigrateKernel).
__global__ void MigrateCommitKernel(int32_t* counts, int num_layers) {
  for (int l = threadIdx.x; l < num_layers; l += blockDim.x) {
    int32_t* c = counts + static_cast<int64_t>(l) * kAkvCountSlots;
    const int nd = c[kAkvNDemote], np = c[kAkvNPromote], nc = c[kAkvNCold];
    c[kAkvNHot] += np - nd;
    c[kAkvNWarm] += nd - np - nc;
    c[kAkvTotDemoted] += nd;
    c[kAkvTotPromoted] += np;
    c[kAkvTotCold] += nc;
  }
}

// Append: one thread per 16-byte unit of a new K or V row slice; unit 0 of
// each row also writes pos and s = 0. n_hot is bumped after every unit has
// read it: by the kernel itself when it is one CTA (a decode row: 256 units
// at Hkv 8, D 128, bf16), which saves a launch on every layer of a step, else
// by AppendCommitKernel.
__device__ __forceinline__ void CommitAppend(int32_t* counts, int rows, int capacity) {
  const int n_hot = min(max(counts[kAkvNHot], 0), capacity);
  const int fit = min(rows, capacity - n_hot);
  counts[kAkvNHot] = n_hot + fit;
  counts[kAkvTotAppendOverflow] += rows - fit;
}

template <class T>
__global__ void AppendKernel(const AkvAppendParams p, const AkvTiers t, int64_t row_stride, bool commit) {
  const int units = p.layout.num_kv_heads * p.layout.head_dim * static_cast<int>(sizeof(T)) / 16;  // per row
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int n_hot = min(max(t.counts[kAkvNHot], 0), p.layout.hot_capacity);
  if (item < static_cast<int64_t>(p.rows) * units * 2) {
    const int kv = static_cast<int>(item / (static_cast<int64_t>(p.rows) * units));
    const int64_t rem = item % (static_cast<int64_t>(p.rows) * units);
    const int r = static_cast<int>(rem / units), u = static_cast<int>(rem % units);
    const int dst = n_hot + r;
    if (dst < p.layout.hot_capacity) {
      const T* src = static_cast<const T*>(kv == 0 ? p.k : p.v) + r * row_stride;
      T* out = static_cast<T*>(kv == 0 ? t.hot_k : t.hot_v) + static_cast<int64_t>(dst) * units * (16 / sizeof(T));
      reinterpret_cast<uint4*>(out)[u] = reinterpret_cast<const uint4*>(src)[u];
      if (kv == 0 && u == 0) {
        t.hot_pos[dst] = p.pos[r];
        t.hot_score[dst] = 0.0f;
      }
    }
  }
  if (!commit) return;  // uniform over the CTA
  __syncthreads();      // every thread has read n_hot
  if (threadIdx.x == 0) CommitAppend(t.counts, p.rows, p.layout.hot_capacity);
}

// Batched decode append: CTA r copies sequence r's new row (its units of K
// and V) into that sequence's hot tier and commits its count.
template <class T>
__global__ void AppendBatchKernel(const AkvAppendParams p, const __grid_constant__ AkvAttnBatch rows,
                                  int64_t row_stride) {
  const AkvAttnSeq& s = *rows.seq[blockIdx.x];
  const int units = p.layout.num_kv_heads * p.layout.head_dim * static_cast<int>(sizeof(T)) / 16;  // per row
  const int n_hot = min(max(s.tiers.counts[kAkvNHot], 0), s.hot_capacity);
  if (n_hot < s.hot_capacity) {
    const int64_t src_row = static_cast<int64_t>(blockIdx.x) * row_stride;
    for (int item = threadIdx.x; item < 2 * units; item += blockDim.x) {
      const int kv = item / units, u = item % units;
      const T* src = static_cast<const T*>(kv == 0 ? p.k : p.v) + src_row;
      T* out = static_cast<T*>(kv == 0 ? s.tiers.hot_k : s.tiers.hot_v) +
               static_cast<int64_t>(n_hot) * units * (16 / sizeof(T));
      reinterpret_cast<uint4*>(out)[u] = reinterpret_cast<const uint4*>(src)[u];
      if (item == 0) {
        s.tiers.hot_pos[n_hot] = s.q_pos[0];
        s.tiers.hot_score[n_hot] = 0.0f;
      }
    }
  }
  __syncthreads();  // every thread has read n_hot
  if (threadIdx.x == 0) CommitAppend(s.tiers.counts, 1, s.hot_capacity);
}

__global__ void AppendCommitKernel(int32_t* counts, int rows, int capacity) {
  if (threadIdx.x == 0) CommitAppend(counts, rows, capacity);
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <class T>
cudaError_t Migrate(const AkvMigrateParams& p, cudaStream_t stream) {
  if (!Aligned16(p.tiers.hot_k) || !Aligned16(p.tiers.hot_v) || !Aligned16(p.tiers.warm_k) ||
      !Aligned16(p.tiers.warm_v) || !Aligned16(p.stage.k) || !Aligned16(p.stage.v))
    return cudaErrorInvalidValue;
  const dim3 grid(p.layout.num_kv_heads, 2, p.num_layers);
  MigrateKernel<T><<<grid, kMigrateThreads, 0, stream>>>(p);
  KV_CUDA_CHECK(cudaGetLastError());
  MigrateCommitKernel<<<1, 128, 0, stream>>>(p.tiers.counts, p.num_layers);
  return cudaGetLastError();
}

template <class T>
cudaError_t Append(const AkvAppendParams& p, cudaStream_t stream) {
  if (p.batch != nullptr) {  // the rows' tiers: the caller vouches for their 16-byte alignment
    const int64_t stride = p.row_stride ? p.row_stride : int64_t(p.layout.num_kv_heads) * p.layout.head_dim;
    if (!Aligned16(p.k) || !Aligned16(p.v) || stride % (16 / static_cast<int64_t>(sizeof(T))) != 0)
      return cudaErrorInvalidValue;
    AppendBatchKernel<T><<<p.rows, 256, 0, stream>>>(p, *p.batch, stride);
    return cudaGetLastError();
  }
  const AkvTiers t = AkvTiersAtLayer(p.tiers, p.layout, p.layer);
  const int64_t row = static_cast<int64_t>(p.layout.num_kv_heads) * p.layout.head_dim;
  const int64_t stride = p.row_stride ? p.row_stride : row;
  if (!Aligned16(p.k) || !Aligned16(p.v) || !Aligned16(t.hot_k) || !Aligned16(t.hot_v) ||
      stride % (16 / static_cast<int64_t>(sizeof(T))) != 0)
    return cudaErrorInvalidValue;
  const int64_t items = static_cast<int64_t>(p.rows) * row * static_cast<int64_t>(sizeof(T)) / 16 * 2;
  const auto ctas = static_cast<unsigned>((items + 255) / 256);
  AppendKernel<T><<<ctas, 256, 0, stream>>>(p, t, stride, /*commit=*/ctas == 1);
  KV_CUDA_CHECK(cudaGetLastError());
  if (ctas == 1) return cudaSuccess;
  AppendCommitKernel<<<1, 32, 0, stream>>>(t.counts, p.rows, p.layout.hot_capacity);
  return cudaGetLastError();
}

}  // namespace
}  // namespace akv_detail

cudaError_t LaunchAkvMigrate(const AkvMigrateParams& p, cudaStream_t stream) {
  if (AkvMigrateValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (!AkvCudaSupports(p.layout.head_dim, p.layout.dtype, p.layout.warm_bits)) return cudaErrorInvalidValue;
  if (p.num_layers == 0) return cudaSuccess;
  if (p.layout.dtype == KvDType::kFp32) return akv_detail::Migrate<float>(p, stream);
  return akv_detail::Migrate<__nv_bfloat16>(p, stream);
}

cudaError_t LaunchAkvAppend(const AkvAppendParams& p, cudaStream_t stream) {
  if (AkvAppendValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (!AkvCudaSupports(p.layout.head_dim, p.layout.dtype, p.layout.warm_bits)) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  if (p.layout.dtype == KvDType::kFp32) return akv_detail::Append<float>(p, stream);
  return akv_detail::Append<__nv_bfloat16>(p, stream);
}

}  // namespace kvstream
