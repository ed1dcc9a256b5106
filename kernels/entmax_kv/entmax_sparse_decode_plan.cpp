// Host-side pieces of K7 (entmax_sparse_decode.h): validation, workspace size
// and split planning. Plain C++ (no CUDA).
#include <algorithm>

#include "kernels/entmax_kv/entmax_sparse_decode.h"

namespace kvstream {

const char* EntmaxSparseDecodeValidate(const EntmaxSparseDecodeParams& p) {
  if (const char* e = EntmaxPagedKvValidate(p.kv)) return e;
  const int H = p.query.num_heads, hs = p.sel.select_heads;
  if (H <= 0 || H % p.kv.num_kv_heads != 0) return "query.num_heads must be a positive multiple of kv.num_kv_heads";
  if (hs != p.kv.num_kv_heads && hs != H) return "sel.select_heads must be num_kv_heads or num_heads";
  if (p.query.stride_b < 0 || p.query.stride_h < 0 || p.out_stride_b < 0 || p.out_stride_h < 0)
    return "strides must be >= 0 (0 = packed)";
  if (p.max_sel_tokens < 1) return "max_sel_tokens must be >= 1";
  if (p.num_splits < 1 || p.num_splits > kEntmaxMaxSplits) return "num_splits must be in [1, 128]";
  if (p.alpha != 1.0f && p.alpha != 1.5f && p.alpha != 2.0f) return "alpha must be 1, 1.5 or 2";
  if (!(p.scale > 0.0f)) return "scale must be > 0 (1/sqrt(D))";
  if (p.alpha != 1.0f) {
    if (p.tau_mode != EntmaxTauMode::kExact && p.tau_mode != EntmaxTauMode::kFixed &&
        p.tau_mode != EntmaxTauMode::kCorrected)
      return "tau_mode must be kExact, kFixed or kCorrected";
    if (p.tau_mode == EntmaxTauMode::kExact && (p.niter < 1 || p.niter > kEntmaxMaxNiter))
      return "niter must be in [1, 16]";
    if (p.tau_mode == EntmaxTauMode::kCorrected &&
        (p.correction_iters < 0 || p.correction_iters > kEntmaxMaxCorrectionIters))
      return "correction_iters must be in [0, 8]";
    if (p.tau_mode != EntmaxTauMode::kExact && p.tau_init == nullptr && p.kv.batch > 0)
      return "tau_init is required for kFixed and kCorrected";
  }
  if (p.kv.batch > 0) {
    if (p.kv.k_pool == nullptr || p.kv.v_pool == nullptr) return "kv.k_pool and kv.v_pool are required";
    if (p.query.q == nullptr || p.out == nullptr) return "query.q and out are required";
    if (p.sel.pages == nullptr || p.sel.page_count == nullptr || p.sel.sel_len == nullptr)
      return "sel.pages, sel.page_count and sel.sel_len are required";
    if (p.tau == nullptr || p.mass == nullptr) return "tau and mass are required";
    const bool fast = EntmaxSoftmaxFastPath(p);
    if (!fast && p.scores == nullptr) return "scores is required (alpha > 1 or more than 8 heads per list)";
    if (p.num_splits > 1 && p.partial_out == nullptr) return "partial_out is required when num_splits > 1";
    if (fast && p.num_splits > 1 && p.partial_lse == nullptr)
      return "partial_lse is required when num_splits > 1 (alpha 1)";
  }
  return nullptr;
}

size_t EntmaxSparseDecodeWorkspaceBytes(int batch, int num_heads, int num_splits, int head_dim) {
  if (num_splits <= 1 || batch <= 0 || num_heads <= 0 || head_dim <= 0) return 0;
  return static_cast<size_t>(batch) * num_heads * num_splits * head_dim * sizeof(float);
}

size_t EntmaxSparseDecodeLseBytes(int batch, int num_heads, int num_splits) {
  if (num_splits <= 1 || batch <= 0 || num_heads <= 0) return 0;
  return static_cast<size_t>(batch) * num_heads * num_splits * 2 * sizeof(float);
}

bool EntmaxSoftmaxFastPath(float alpha, int num_heads, int select_heads) {
  return alpha == 1.0f && select_heads > 0 && num_heads % select_heads == 0 && num_heads / select_heads <= 8;
}

bool EntmaxSoftmaxFastPath(const EntmaxSparseDecodeParams& p) {
  return EntmaxSoftmaxFastPath(p.alpha, p.query.num_heads, p.sel.select_heads);
}

int PlanEntmaxSoftmaxDecodeSplits(int batch, int select_heads, int max_sel_tokens, int num_sms) {
  if (batch <= 0 || select_heads <= 0 || max_sel_tokens <= 0 || num_sms <= 0) return 1;
  // Each CTA keeps two 32-token stages in flight; ~4 CTAs per SM keep ~64 KB
  // of loads in flight per SM, past what the copy bandwidth needs (Little's
  // law: ~3 TB/s x ~1 us over 132 SMs ~ 23 KB). Fewer than 64 tokens per
  // split would make the merge's partials a sizeable share of the bytes.
  // Rounded down: one wave (the H100 bench at B = 8 took 2 waves, 576 CTAs for
  // 528 slots, with 9 splits instead of 8).
  const long long lists = static_cast<long long>(batch) * select_heads, target = 4LL * num_sms;
  long long s = std::max(1LL, target / lists);
  s = std::min<long long>(s, (max_sel_tokens + 63) / 64);
  return static_cast<int>(std::clamp<long long>(s, 1, kEntmaxMaxSplits));
}

int PlanEntmaxSparseDecodeSplits(int batch, int num_heads, int max_sel_tokens, int num_sms) {
  if (batch <= 0 || num_heads <= 0 || max_sel_tokens <= 0 || num_sms <= 0) return 1;
  const long long heads = static_cast<long long>(batch) * num_heads, target = 2LL * num_sms;
  long long s = heads >= target ? 1 : target / heads;
  s = std::min<long long>(s, std::max(1, max_sel_tokens / 128));
  return static_cast<int>(std::clamp<long long>(s, 1, kEntmaxMaxSplits));
}

}  // namespace kvstream
