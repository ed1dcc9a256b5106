// Gaussian-aware page selection (entmax_kv.md §4 step 3b, §7 K4-K6; alpha > 1
// only: GAUSSIAN with alpha = 1 is refused upstream of these kernels, §6).
// Shapes and letters: entmax_kv_layout.h; scalar math: entmax_gauss_math.h.
//
// K4 gauss_stats, per query head h (KV head g = h/G) and page p < P_hist:
//   mu[b,h,p]    = sum_d (scale q_hd) kmean_pgd
//   sigma[b,h,p] = sqrt(sum_d (scale q_hd)^2 kstd_pgd^2)       (dims independent)
//   mu_g = mean_p mu_p;  sigma_g = sqrt(mean_p sigma_p^2 + var_p mu_p)
//   (population var; sigma_g >= 1e-6; NaN or P_hist = 0 -> mu_g 0, sigma_g 1e-6)
// K5 tau_hat: tau_hat[b,h] = EntmaxTauHat(mu_g, sigma_g, n_tok = P_hist*P, alpha)
//   (0 when P_hist = 0).
// K6 gauss_select_pack, per query head h of selection head l:
//   U = mean_p(mu_p + 1.5 sigma_p);  a = alpha - 1
//   Delta = max(safety_margin_z sigma_g, excess_fraction max(tau_hat/a - U, 0))
//   tau_floor = tau_hat - a Delta;  h keeps p iff a (mu_p + z_page sigma_p) > tau_floor
//   List of l: the first min(sink_pages, P_hist) pages (added, never capped),
//   plus the union of its heads' picks, capped at ceil(max_selected_fraction *
//   P_hist) pages ranked by the largest mu_p + z_page sigma_p among the heads
//   that picked p (ties to the lower page), then the tail; ascending.
//   Dense fallback: T < min_context -> all pages (§4 step 2; T <= P has only the tail).
//   Clamp (clamp_tau; per head, over the historical pages of ITS list, since
//   that is what the head attends): cap = max_p (mu_p + z_clamp sigma_p / 3),
//   tau_up = max(a cap - 1e-4, tau_floor), tau = min(tau_hat, tau_up); no
//   historical page in the list -> tau = tau_hat (README decision).
//   tau[b,h] is K7's tau_init.
// z_page = EntmaxPageMaxZ(max_quantile, P), z_clamp = EntmaxPageMaxZ(
// tau_clamp_page_max_quantile, P): host-computed.
#pragma once

#include "kernels/entmax_kv/entmax_kv_layout.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_ENTMAX_KV_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct EntmaxGaussStatsParams {
  EntmaxPagedKv kv;            // block_table, seq_lens and sizes (pools unused)
  EntmaxQuery query;           // q [B, H, D]
  EntmaxStatsPools stats;      // kmean, kstd [NB, Hkv, D] fp32
  float* mu = nullptr;         // [B, H, MB] fp32 out, entries p < P_hist
  float* sigma = nullptr;      // [B, H, MB] fp32 out
  float* mu_g = nullptr;       // [B, H] fp32 out
  float* sigma_g = nullptr;    // [B, H] fp32 out
  float scale = 0.0f;          // 1/sqrt(D)
};

struct EntmaxTauHatParams {
  const float* mu_g = nullptr;        // [B, H]
  const float* sigma_g = nullptr;     // [B, H]
  const int32_t* seq_lens = nullptr;  // [B] live T (n_tok = P_hist * P)
  float* tau_hat = nullptr;           // [B, H] fp32 out
  int batch = 0, num_heads = 0, page_size = 0, max_blocks_per_seq = 0;
  float alpha = 1.5f;                 // 1.5 or 2
};

struct EntmaxGaussSelectParams {
  const float* mu = nullptr;          // [B, H, MB] (K4)
  const float* sigma = nullptr;       // [B, H, MB] (K4)
  const float* sigma_g = nullptr;     // [B, H] (K4)
  const float* tau_hat = nullptr;     // [B, H] (K5)
  const int32_t* seq_lens = nullptr;  // [B]
  int batch = 0, num_heads = 0, page_size = 0, max_blocks_per_seq = 0;
  EntmaxSelection sel;                // out: lists per selection head (Hs = Hkv or H)
  float* tau = nullptr;               // [B, H] fp32 out: clamped tau (K7 tau_init)
  float alpha = 1.5f;                 // 1.5 or 2
  float safety_margin_z = 0.0f;       // §5, 0-5
  float excess_fraction = 0.1f;       // §5 threshold_excess_margin_fraction, 0-1
  float z_page = 3.42f;               // EntmaxPageMaxZ(max_quantile, P)
  float z_clamp = 1.724f;             // EntmaxPageMaxZ(tau_clamp_page_max_quantile, P)
  bool clamp_tau = true;
  int sink_pages = 0;                 // 0-8
  float max_selected_fraction = 1.0f; // (0, 1]
  int min_context = 0;
};

const char* EntmaxGaussStatsValidate(const EntmaxGaussStatsParams& p);
const char* EntmaxTauHatValidate(const EntmaxTauHatParams& p);
const char* EntmaxGaussSelectValidate(const EntmaxGaussSelectParams& p);

// CPU twins: K4 direct sums (fp32 per page, fp64 group moments), K5 the same
// solver in fp64, K6 direct loops with std::stable_sort for the cap.
bool EntmaxGaussStatsRef(const EntmaxGaussStatsParams& p);
bool EntmaxTauHatRef(const EntmaxTauHatParams& p);
bool EntmaxGaussSelectRef(const EntmaxGaussSelectParams& p);

#if defined(KVSTREAM_ENTMAX_KV_HAS_LAUNCHER)
cudaError_t LaunchEntmaxGaussStats(const EntmaxGaussStatsParams& p, cudaStream_t stream);   // CTA per (h, b)
cudaError_t LaunchEntmaxTauHat(const EntmaxTauHatParams& p, cudaStream_t stream);           // thread per (b, h)
cudaError_t LaunchEntmaxGaussSelect(const EntmaxGaussSelectParams& p, cudaStream_t stream); // CTA per (l, b)
#endif

}  // namespace kvstream
