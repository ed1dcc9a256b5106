// K7 sparse_decode (entmax_kv.md §4 steps 4-5, §6, §7): attention of one
// query token per sequence over the selected pages, alpha in {1, 1.5, 2}.
// Shapes and letters: entmax_kv_layout.h.
//
// Query head h of sequence b attends the T_sel tokens of page list
// l = h / (H/Hs): token j (0 <= j < T_sel) is offset j % P of logical page
// pages[b,l,j/P] (every listed page but the last is full; the last is the tail).
// T_sel = min(sel_len[b,l], MT, page_count[b,l]*P), read on the device.
//
// Scores: s_j = scale * q.k_j (scale = 1/sqrt(D), host-computed);
//   alpha = 1: z_j = s_j;  alpha > 1: z_j = (alpha-1) * s_j (§4 notation).
// They are computed once into the fp32 scratch `scores` [B, H, MT] (§3: read
// the selected K once), then tau is found per head on the scratch alone:
//   alpha = 1 [kvstream choice, §6]: tau = m + log sum exp(z - m) (softmax);
//   alpha > 1, tau_mode:
//     kExact     histogram start, bracket [m-1, m - T_sel^(1-alpha)] (always
//                valid, §6 "Exact-tau bracket"), niter EntmaxExactStep passes
//     kFixed     tau = tau_init (K6's clamped tau-hat)
//     kCorrected tau_init clamped to [m-1, m], then up to correction_iters
//                EntmaxHybridStep (stops at |f| <= 1e-6) (§6 "CORRECTED")
// (entmax_math.h holds those steps, shared with the twin). Weights
// p_j = exp(z_j - tau) (alpha 1) or (z_j - tau)_+^(1/(alpha-1)); then
//   mass = sum p_j (before normalising; |mass - 1| is the report's mass error),
//   support = #{p_j > 0},
//   out = sum p_j v_j / (normalize_output ? mass : 1)   (§4 step 5, §6).
// T_sel == 0 (empty list) writes out = 0, tau = 0, mass = 0, support = 0.
//
// Split-K: the score and value passes are split over the selected tokens
// (EntmaxSplitRange); with num_splits > 1 the value pass writes
// partial_out [B, H, S, D] fp32 and a merge kernel sums the splits and
// normalises. tau/mass need every score, so one CTA per head finds them between
// the two passes. No host sync anywhere: lengths and lists are device data.
//
// Fast path, alpha = 1 with H/Hs <= 8 (issue 9; §3 "read the selected K/V
// once"): tau is the log-sum-exp, so one streaming kernel does everything with
// an online softmax (entmax_softmax_decode.cu): grid (S, Hs, B), one CTA per
// (split, page list) serving the list's H/Hs query heads from each K/V load
// (GQA), the split's selected pages streamed into shared memory with 16-byte
// cp.async, two stages in flight. With S > 1 each split writes its normalised
// partial and (log2-sum-exp, support) to partial_lse [B, H, S, 2], and a merge
// kernel combines them (weights 2^(lse_s - lse)). No score scratch is written
// (`scores` may be null); mass = 1 by construction (0 for an empty list).
// Same math as the twin up to fp32 rounding; its split count comes from
// PlanEntmaxSoftmaxDecodeSplits.
#pragma once

#include "kernels/entmax_kv/entmax_kv_layout.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_ENTMAX_KV_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct EntmaxSparseDecodeParams {
  EntmaxPagedKv kv;                     // K/V pools, block_table, seq_lens (unused: lists carry T_sel), sizes
  EntmaxQuery query;                    // q [B, H, D]
  EntmaxSelection sel;                  // pages [B, Hs, MB], page_count, sel_len [B, Hs] (read only)
  void* out = nullptr;                  // [B, H, D] dtype, element (b,h,d) at b*out_stride_b + h*out_stride_h + d
  int64_t out_stride_b = 0;             // elements; 0 = H*D
  int64_t out_stride_h = 0;             // elements; 0 = D
  float* scores = nullptr;              // [B, H, MT] fp32 scratch (caller-owned, reused per layer);
                                        // unused (may be null) on the alpha-1 fast path
  int max_sel_tokens = 0;               // MT
  float* tau = nullptr;                 // [B, H] fp32 out: final tau (alpha 1: the log-sum-exp)
  float* mass = nullptr;                // [B, H] fp32 out: sum p_j before normalising
  int32_t* support = nullptr;           // [B, H] int32 out, optional: #{p_j > 0}
  const float* tau_init = nullptr;      // [B, H] fp32 in: K6's tau (kFixed / kCorrected only)
  float* partial_out = nullptr;         // [B, H, S, D] fp32 workspace; required iff num_splits > 1
  float* partial_lse = nullptr;         // [B, H, S, 2] fp32 workspace of the alpha-1 fast path; required
                                        // iff num_splits > 1 and EntmaxSoftmaxFastPath(p)
  int num_splits = 1;                   // S in [1, kEntmaxMaxSplits]
  float alpha = 1.0f;                   // 1, 1.5 or 2
  float scale = 0.0f;                   // 1/sqrt(D)
  EntmaxTauMode tau_mode = EntmaxTauMode::kExact;
  int niter = 3;                        // kExact passes, 1-16 (§5: 3 for alpha 1.5, 4 for 2)
  int correction_iters = 3;             // kCorrected steps, 0-8
  bool normalize_output = true;         // §5 normalize_output
};

const char* EntmaxSparseDecodeValidate(const EntmaxSparseDecodeParams& p);

// Workspace for S splits (0 when S <= 1): partial_out bytes B*H*S*D*4.
size_t EntmaxSparseDecodeWorkspaceBytes(int batch, int num_heads, int num_splits, int head_dim);
// partial_lse bytes of the fast path for S splits (0 when S <= 1): B*H*S*2*4.
size_t EntmaxSparseDecodeLseBytes(int batch, int num_heads, int num_splits);

// True when LaunchEntmaxSparseDecode takes the alpha-1 streaming path: alpha 1
// and at most 8 query heads per page list (H/Hs <= 8).
bool EntmaxSoftmaxFastPath(const EntmaxSparseDecodeParams& p);
bool EntmaxSoftmaxFastPath(float alpha, int num_heads, int select_heads);

// Split count of the fast path: enough CTAs over the B*Hs page lists for about
// four per SM, at least 64 selected tokens per split (max_sel_tokens = MT, the
// host's bound on T_sel), in [1, kEntmaxMaxSplits]; 1 for bad arguments.
int PlanEntmaxSoftmaxDecodeSplits(int batch, int select_heads, int max_sel_tokens, int num_sms);

// Split count for a step: about two CTAs per SM over B*H heads, at least 128
// selected tokens per split, in [1, kEntmaxMaxSplits]; 1 for bad arguments.
int PlanEntmaxSparseDecodeSplits(int batch, int num_heads, int max_sel_tokens, int num_sms);

// CPU twin: same scores (fp32), the same tau algorithm in fp64 (entmax_math.h),
// fp64 weighted sums, outputs rounded to dtype; split-K changes only the GPU's
// summation order, so the twin ignores num_splits and partial_out. Writes the
// scores scratch like the kernel. False (nothing written) on invalid params or
// an out-of-range page id.
bool EntmaxSparseDecodeRef(const EntmaxSparseDecodeParams& p);

#if defined(KVSTREAM_ENTMAX_KV_HAS_LAUNCHER)
// Fast path (EntmaxSoftmaxFastPath): softmax kernel (S, Hs, B) [-> LSE merge
// (H, B) when S > 1]. Otherwise score kernel (S, H, B) -> tau kernel (H, B) ->
// value kernel (S, H, B) [-> merge kernel (H, B) when S > 1]. Never
// allocates, syncs or prints.
cudaError_t LaunchEntmaxSparseDecode(const EntmaxSparseDecodeParams& p, cudaStream_t stream);
// The fast path alone (entmax_softmax_decode.cu); LaunchEntmaxSparseDecode
// calls it. cudaErrorInvalidValue unless EntmaxSoftmaxFastPath(p).
cudaError_t LaunchEntmaxSoftmaxDecode(const EntmaxSparseDecodeParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
