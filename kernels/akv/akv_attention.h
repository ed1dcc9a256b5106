// AKV mixed-precision attention (akv.md §4 step 2, §7 akv_mixed_attention):
// one exact softmax over the hot rows (model dtype) and the warm rows
// (codes read as they are stored, used in registers); cold rows are never attended.
//
//   z_ij = scale * q_ih . k^_j   for j in hot [0, n_hot) ++ warm [0, n_warm) with pos_j <= q_pos_i
//   out_ih = sum_j softmax_j(z_ij) v^_j,   lse_ih = ln sum_j exp(z_ij)   (fp32; -inf, out 0 if none)
// Query head h reads KV head h / (Hq / Hkv). The same kernel serves decode
// (M = 1, split-K over tokens, partials merged by lse) and prefill (M rows,
// causal by stored positions). Tokens are indexed hot first, then warm
// ("virtual index" t < n_hot: hot row t, else warm row t - n_hot); split s
// covers AkvAttentionSplitRange(n_hot, n_warm, S, s).
//
// Shapes (legend in akv_layout.h)
//   q            [M, Hq, D] dtype, element (i,h,d) at i*q_stride_m + h*q_stride_h + d
//   q_pos        [M] int32 (device for the launcher): absolute position of query row i
//   out          [M, Hq, D] dtype (packed)
//   lse          [M, Hq] fp32, natural log of the scaled scores (optional)
//   partial_out  [M, Hq, S, D] fp32 workspace, partial_lse [M, Hq, S] fp32 (iff S > 1)
//
// Batched decode (batch != null): M sequences, one decode row each, every
// row over its own tiers: row i of q/out/lse/partials attends over
// *batch->seq[i] (its layer's tiers, position, capacities). The engine's
// sequences each own their tier buffers; one launch over all of them fills
// the GPU where M launches of one row leave it idle between kernels
// (bench/attention/akv_attention_batch_bench.cu). The row pointers travel
// in the launch's parameters, so a captured graph replays them as they were.
#pragma once

#include <cstdint>

#include "kernels/akv/akv_layout.h"
#include "kernels/common/split_k.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_AKV_HAS_LAUNCHER 1
#endif

namespace kvstream {

inline constexpr int kAkvAttnMaxSplits = 1024;  // launch cap (benches sweep up to it; plans stay at <= 8 waves)
inline constexpr int kAkvAttnSplitAlign = 16;      // split boundaries: multiples of this
inline constexpr int kAkvAttnMinSplitTokens = 128;  // planner: fewest tokens per split
inline constexpr int kAkvAttnMmaMaxGroup = 8;       // tensor-core decode: query heads per KV head
inline constexpr int kAkvAttnMmaMaxKvPerCta = 8;    // tensor-core decode: KV heads (warps) per CTA
inline constexpr int kAkvAttnMmaMinSplitTokens = 64;  // tensor-core decode planner: fewest tokens per split
inline constexpr int kAkvAttnHotSplitWeight = 4;  // split cuts: a hot token costs this many warm ones (see below)

// KV heads per CTA of the tensor-core decode kernel: the largest divisor of
// Hkv up to kAkvAttnMmaMaxKvPerCta (the CTA shares their scale loads).
KV_HD int AkvMmaKvHeadsPerCta(int num_kv_heads) {
  for (int h = num_kv_heads < kAkvAttnMmaMaxKvPerCta ? num_kv_heads : kAkvAttnMmaMaxKvPerCta; h > 1; --h) {
    if (num_kv_heads % h == 0) return h;
  }
  return 1;
}

// Which CUDA kernel serves a launch. kAuto: the tensor-core decode kernel
// (akv_attention_mma.cuh) where it applies (M = 1, bf16, Hq/Hkv <= kAkvAttnMmaMaxGroup,
// 16-byte aligned warm codes), else the CUDA-core kernel. The explicit
// values exist for tests and benches; kTensorCore where it does not apply is
// cudaErrorInvalidValue. The CPU twin ignores it.
enum class AkvAttnPath : uint8_t { kAuto = 0, kCudaCore = 1, kTensorCore = 2 };

// One sequence of a batched decode launch, at the launch's layer. Every
// tier set of a batch shares heads, dims, bits, group size and dtype (the
// launch's layout); the capacities follow each request's size.
struct AkvAttnSeq {
  AkvTiers tiers;                  // that sequence's tiers, moved to the layer (AkvTiersAtLayer)
  const int32_t* q_pos = nullptr;  // [1] its query row's position
  int hot_capacity = 0;            // C_hot of its tiers (<= the launch layout's)
  int warm_capacity = 0;           // C_warm (<= the launch layout's)
};

inline constexpr int kAkvAttnMaxBatch = 64;  // rows of one batched launch (kernel parameter space)

// Row i of a batched launch reads *seq[i] (device pointers for launchers,
// host pointers for twins; the struct itself is host memory, copied into
// the launch).
struct AkvAttnBatch {
  const AkvAttnSeq* seq[kAkvAttnMaxBatch] = {};
};

struct AkvAttentionParams {
  AkvLayout layout;                // batched: capacities bound every row's
  AkvTiers tiers;                  // read only: hot_k/v/pos, warm_k/v/scales/pos, counts (unused if batched)
  int layer = 0;                   // which layer of the stacked tiers
  const void* q = nullptr;         // [M, Hq, D] dtype
  const int32_t* q_pos = nullptr;  // [M]
  void* out = nullptr;             // [M, Hq, D] dtype
  float* lse = nullptr;            // [M, Hq] or nullptr
  float* partial_out = nullptr;    // [M, Hq, S, D] iff num_splits > 1
  float* partial_lse = nullptr;    // [M, Hq, S] iff num_splits > 1
  int64_t q_stride_m = 0;          // elements; 0 = Hq*D
  int64_t q_stride_h = 0;          // elements; 0 = D
  int num_rows = 0;                // M
  int num_heads = 0;               // Hq (multiple of Hkv)
  int num_splits = 1;              // S
  float scale = 0.0f;              // softmax scale, usually 1/sqrt(D)
  AkvAttnPath path = AkvAttnPath::kAuto;
  // Batched decode: num_rows (<= kAkvAttnMaxBatch) sequences, one query row
  // each (tiers, layer and q_pos above unused). CUDA: the tensor-core kernel
  // only (bf16, G <= 8); the caller vouches for the rows' 16-byte alignment.
  const AkvAttnBatch* batch = nullptr;
};

// Contiguous part `part` of `parts` over n tokens starting at `base`: chunk =
// ceil(n / parts) rounded up to kAkvAttnSplitAlign; trailing parts may be empty.
KV_HD void AkvAttentionEvenRange(int n, int parts, int part, int base, int* begin, int* end) {
  int chunk = (n + parts - 1) / parts;
  chunk = (chunk + kAkvAttnSplitAlign - 1) / kAkvAttnSplitAlign * kAkvAttnSplitAlign;
  if (chunk == 0) chunk = kAkvAttnSplitAlign;
  const long long b = static_cast<long long>(part) * chunk;
  const int first = b < n ? static_cast<int>(b) : n;
  *begin = base + first;
  *end = base + ((n - first) < chunk ? n : first + chunk);
}

// Split s of S over the virtual tokens [0, n_hot + n_warm). With both tiers
// live and S > 1 no split mixes them: the hot rows (bf16, read with plain
// loads, no copy ring) get a share of the splits as if each hot token were
// kAkvAttnHotSplitWeight warm ones, so the hot splits end with the warm ones
// instead of trailing them (one sequence's launch is a single wave of CTAs:
// its slowest split is the kernel's time). Kernels and twin share it.
KV_HD void AkvAttentionSplitRange(int n_hot, int n_warm, int num_splits, int split, int* begin, int* end) {
  if (num_splits <= 1 || n_hot <= 0 || n_warm <= 0) {
    AkvAttentionEvenRange(n_hot + n_warm, num_splits, split, 0, begin, end);
    return;
  }
  const long long wh = static_cast<long long>(n_hot) * kAkvAttnHotSplitWeight, all = wh + n_warm;
  long long want = (num_splits * wh + all / 2) / all;  // rounded share of the splits
  want = want < 1 ? 1 : (want > num_splits - 1 ? num_splits - 1 : want);
  int chunk = static_cast<int>((n_hot + want - 1) / want);
  chunk = (chunk + kAkvAttnSplitAlign - 1) / kAkvAttnSplitAlign * kAkvAttnSplitAlign;
  const int hot_splits = (n_hot + chunk - 1) / chunk;  // <= want: rounding the chunk up may free some
  if (split < hot_splits) {
    AkvAttentionEvenRange(n_hot, hot_splits, split, 0, begin, end);
  } else {
    AkvAttentionEvenRange(n_warm, num_splits - hot_splits, split - hot_splits, n_hot, begin, end);
  }
}

// S for a decode step (M = 1): waves of resident CTAs (tensor-core kernel
// where G <= kAkvAttnMmaMaxGroup: two waves of 16 warps per SM over Hkv / HC CTAs
// of HC warps, at least kAkvAttnMmaMinSplitTokens tokens per split; else
// 2-4 CTAs per SM by query vectors per CTA over Hkv * chunks CTAs),
// at least kAkvAttnMinSplitTokens tokens per split; prefill (M > 1) gets 1.
// max_tokens = C_hot + C_warm bounds n_hot + n_warm. `side_by_side`
// sequences' attentions run at once (the engine's side streams): each gets
// its share of the waves, so B sequences fill them once instead of B times
// over with splits of a few dozen tokens. `one_launch`: they are the rows of
// one batched launch (AkvAttnBatch), which wants more waves than chains do.
int PlanAkvAttentionSplits(int num_rows, int num_heads, int num_kv_heads, int max_tokens, int num_sms,
                           int side_by_side = 1, bool one_launch = false);

// M*Hq*S*D*4 and M*Hq*S*4 bytes (0 when num_splits <= 1).
using AkvAttentionWorkspaceBytes = SplitKWorkspaceBytes;
inline AkvAttentionWorkspaceBytes AkvAttentionWorkspace(int num_rows, int num_heads, int num_splits, int head_dim) {
  return SplitKWorkspace(num_rows, num_heads, num_splits, head_dim);
}

// nullptr if valid, else a static message naming the bad field.
const char* AkvAttentionValidate(const AkvAttentionParams& p);
// One row of a batched launch against the launch's layout (host-readable seq).
const char* AkvAttnSeqValidate(const AkvAttnSeq& s, const AkvLayout& launch);

// CPU twin: warm rows dequantized (bit-identical x^), per split an exact
// two-pass softmax in double, splits merged by lse as on the GPU; partials
// are written when S > 1. Returns false (nothing written) if invalid.
bool AkvAttentionRef(const AkvAttentionParams& p);

// True for the (head_dim, dtype, bits) the CUDA kernels are built for:
// D in {64, 128}, dtype bf16 or fp32, b in {2, 4, 8} (the twins also take fp16).
bool AkvCudaSupports(int head_dim, KvDType dtype, int bits);

#if defined(KVSTREAM_AKV_HAS_LAUNCHER)
// Enqueues the attention kernel (+ the lse merge for S > 1). Never allocates
// or syncs; cudaErrorInvalidValue on invalid/unsupported/misaligned params
// (16-byte aligned q/out/hot/partials, q strides multiples of 16 bytes).
cudaError_t LaunchAkvMixedAttention(const AkvAttentionParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
