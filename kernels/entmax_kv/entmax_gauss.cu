// K4 gauss_stats, K5 tau_hat and K6 gauss_select_pack on the GPU
// (entmax_gauss.h). K4: one CTA per (head, sequence), a warp per page, then
// block reductions for the group moments (the CTA re-reads its own mu row,
// visible after the barrier). K5: one thread per head running the shared
// solver in fp32. K6: one CTA per (selection head, sequence): per-head floors
// by block reduction, the capped union by AKV's radix selection + ordered emit
// (as K3), then per-head clamp maxima over the emitted list.
#include <cuda_runtime.h>

#include "kernels/akv/akv_device.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/cuda_check.h"
#include "kernels/entmax_kv/entmax_dispatch.cuh"
#include "kernels/entmax_kv/entmax_gauss.h"
#include "kernels/entmax_kv/entmax_gauss_math.h"
#include "kernels/entmax_kv/entmax_page_stats.h"

namespace kvstream::entmax_detail {
namespace {

constexpr int kStatsThreads = 128;
constexpr int kSelThreads = 256;

template <class T, int D>
__global__ void __launch_bounds__(kStatsThreads) GaussStatsKernel(const EntmaxGaussStatsParams p) {
  constexpr int kE = D / 32;
  __shared__ float red[32];
  const EntmaxPagedKv& kv = p.kv;
  const int b = blockIdx.y, h = blockIdx.x, H = p.query.num_heads, MB = kv.max_blocks_per_seq;
  const int g = h / (H / kv.num_kv_heads), lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t qsb = p.query.stride_b ? p.query.stride_b : static_cast<int64_t>(H) * D;
  const int64_t qsh = p.query.stride_h ? p.query.stride_h : D;
  const T* q = static_cast<const T*>(p.query.q) + b * qsb + h * qsh;
  float qs[kE];
#pragma unroll
  for (int e = 0; e < kE; ++e) qs[e] = p.scale * ToF(q[lane + 32 * e]);
  const EntmaxSeqPages s = EntmaxPagesOf(kv.seq_lens[b], kv.page_size, MB);
  const int64_t bh = static_cast<int64_t>(b) * H + h;
  float sum_mu = 0.0f, sum_var = 0.0f;
  for (int pg = warp; pg < s.hist; pg += kStatsThreads / 32) {
    const int64_t st = (EntmaxStatsSlot(kv, b, pg) * kv.num_kv_heads + g) * D;
    float mu = 0.0f, var = 0.0f;
#pragma unroll
    for (int e = 0; e < kE; ++e) {
      const int d = lane + 32 * e;
      const float sd = p.stats.kstd[st + d];
      mu = fmaf(qs[e], p.stats.kmean[st + d], mu);
      var = fmaf(qs[e] * qs[e], sd * sd, var);
    }
    mu = WarpSum(mu);
    var = WarpSum(var);
    if (lane == 0) {
      p.mu[bh * MB + pg] = mu;
      p.sigma[bh * MB + pg] = sqrtf(var);
      sum_mu += mu;
      sum_var += var;
    }
  }
  sum_mu = BlockReduce<false>(sum_mu, red);
  sum_var = BlockReduce<false>(sum_var, red);
  const float mean = s.hist > 0 ? sum_mu / s.hist : 0.0f;
  float vm = 0.0f;
  for (int pg = threadIdx.x; pg < s.hist; pg += blockDim.x) {
    const float c = p.mu[bh * MB + pg] - mean;
    vm += c * c;
  }
  vm = BlockReduce<false>(vm, red);
  if (threadIdx.x == 0) {
    float mu_g = 0.0f, sigma_g = kEntmaxStdFloor;
    if (s.hist > 0) {
      mu_g = mean;
      sigma_g = fmaxf(sqrtf(sum_var / s.hist + vm / s.hist), kEntmaxStdFloor);
      if (isnan(mu_g) || isnan(sigma_g)) mu_g = 0.0f, sigma_g = kEntmaxStdFloor;
    }
    p.mu_g[bh] = mu_g;
    p.sigma_g[bh] = sigma_g;
  }
}

__global__ void TauHatKernel(const EntmaxTauHatParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(p.batch) * p.num_heads) return;
  const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[i / p.num_heads], p.page_size, p.max_blocks_per_seq);
  p.tau_hat[i] = s.hist == 0 ? 0.0f
                             : EntmaxTauHat<float>(p.mu_g[i], p.sigma_g[i], static_cast<float>(s.hist) * p.page_size, p.alpha);
}

struct SelShared {
  float red[32];
  float floor_h[64];
  akv_detail::SelectScratch ss;
  akv_detail::EmitScratch es;
};

__global__ void __launch_bounds__(kSelThreads) GaussSelectKernel(const EntmaxGaussSelectParams p) {
  __shared__ SelShared sh;
  const int b = blockIdx.y, l = blockIdx.x, H = p.num_heads, MB = p.max_blocks_per_seq;
  const int per_list = H / p.sel.select_heads;
  const int64_t row = static_cast<int64_t>(b) * p.sel.select_heads + l;
  const int64_t bh0 = static_cast<int64_t>(b) * H + l * per_list;
  const EntmaxSeqPages s = EntmaxPagesOf(p.seq_lens[b], p.page_size, MB);
  const bool dense = s.tokens < p.min_context;
  const int sinks = min(p.sink_pages, s.hist);
  const float a = p.alpha - 1.0f;
  for (int i = 0; i < per_list; ++i) {
    const int64_t bh = bh0 + i;
    float u = 0.0f;
    for (int pg = threadIdx.x; pg < s.hist; pg += blockDim.x) u += p.mu[bh * MB + pg] + 1.5f * p.sigma[bh * MB + pg];
    u = BlockReduce<false>(u, sh.red);
    if (threadIdx.x == 0) {
      u = s.hist > 0 ? u / s.hist : 0.0f;
      const float excess = fmaxf(p.tau_hat[bh] / a - u, 0.0f);
      sh.floor_h[i] = p.tau_hat[bh] - a * fmaxf(p.safety_margin_z * p.sigma_g[bh], p.excess_fraction * excess);
    }
  }
  __syncthreads();
  // best score of page pg among the heads that pick it; -inf if none.
  auto best = [&](int pg) {
    float m = -INFINITY;
    for (int i = 0; i < per_list; ++i) {
      const float sc = p.mu[(bh0 + i) * MB + pg] + p.z_page * p.sigma[(bh0 + i) * MB + pg];
      if (a * sc > sh.floor_h[i]) m = fmaxf(m, sc);
    }
    return m;
  };
  auto picked = [&](int pg) { return pg >= sinks && best(pg) > -INFINITY; };
  auto key = [&](int pg) { return EntmaxPageRankKey(best(pg), pg); };
  const int cap = static_cast<int>(ceil(static_cast<double>(p.max_selected_fraction) * s.hist));
  int32_t* out = p.sel.pages + row * MB;
  int nh;
  if (dense) {
    for (int pg = threadIdx.x; pg < s.hist; pg += blockDim.x) out[pg] = pg;
    nh = s.hist;
  } else {
    const int ncand = akv_detail::BlockCount(s.hist, picked);
    uint64_t thr = ~0ull;
    if (ncand > cap && cap > 0) thr = akv_detail::BlockKthSmallest<64>(s.hist, cap, picked, key, &sh.ss);
    const bool none = ncand > cap && cap == 0;
    nh = akv_detail::BlockEmit(
        s.hist, [&](int pg) { return pg < sinks || (!none && picked(pg) && key(pg) <= thr); },
        [](int pg) { return static_cast<int32_t>(pg); }, out, &sh.es);
  }
  __syncthreads();  // the emitted list is read back below
  for (int i = 0; i < per_list; ++i) {
    const int64_t bh = bh0 + i;
    float cmax = -INFINITY;
    for (int k = threadIdx.x; k < nh; k += blockDim.x) {
      const int pg = out[k];
      cmax = fmaxf(cmax, p.mu[bh * MB + pg] + p.z_clamp * p.sigma[bh * MB + pg] / 3.0f);
    }
    cmax = BlockReduce<true>(cmax, sh.red);
    if (threadIdx.x == 0) {
      float tau = p.tau_hat[bh];
      if (p.clamp_tau && nh > 0) tau = fminf(tau, fmaxf(a * cmax - 1e-4f, sh.floor_h[i]));
      p.tau[bh] = tau;
    }
  }
  if (threadIdx.x == 0) {
    int cnt = nh;
    if (s.pages > 0) out[cnt++] = s.pages - 1;
    p.sel.page_count[row] = cnt;
    p.sel.sel_len[row] = s.pages > 0 ? nh * p.page_size + s.tail_len : 0;
  }
}

}  // namespace
}  // namespace kvstream::entmax_detail

namespace kvstream {

cudaError_t LaunchEntmaxGaussStats(const EntmaxGaussStatsParams& p, cudaStream_t stream) {
  if (EntmaxGaussStatsValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.kv.batch == 0) return cudaSuccess;
  if (p.kv.batch > 65535) return cudaErrorInvalidValue;
  return entmax_detail::DispatchTypeDim(p.kv.dtype, p.kv.head_dim, [&]<class T, int D>() {
    entmax_detail::GaussStatsKernel<T, D><<<dim3(p.query.num_heads, p.kv.batch), entmax_detail::kStatsThreads, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

cudaError_t LaunchEntmaxTauHat(const EntmaxTauHatParams& p, cudaStream_t stream) {
  if (EntmaxTauHatValidate(p) != nullptr) return cudaErrorInvalidValue;
  const int64_t n = static_cast<int64_t>(p.batch) * p.num_heads;
  if (n == 0) return cudaSuccess;
  entmax_detail::TauHatKernel<<<static_cast<unsigned>((n + 127) / 128), 128, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchEntmaxGaussSelect(const EntmaxGaussSelectParams& p, cudaStream_t stream) {
  if (EntmaxGaussSelectValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.batch == 0) return cudaSuccess;
  if (p.batch > 65535) return cudaErrorInvalidValue;
  entmax_detail::GaussSelectKernel<<<dim3(p.sel.select_heads, p.batch), entmax_detail::kSelThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
