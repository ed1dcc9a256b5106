// Host-side planning and validation for the AKV kernels (plain C++, no CUDA):
// supported shapes, split planner, workspace sizes, per-layer pointer offsets
// and the Validate functions every launcher and twin calls first.
#include <algorithm>
#include <cmath>

#include "kernels/akv/akv.h"

namespace kvstream {
namespace {

bool DtypeOk(KvDType t) { return t == KvDType::kFp32 || t == KvDType::kFp16 || t == KvDType::kBf16; }

const char* LayoutValidate(const AkvLayout& l) {
  if (l.num_kv_heads < 1 || l.num_kv_heads > 128) return "layout.num_kv_heads must be in [1, 128]";
  if (!AkvQuantSupports(l.head_dim, l.warm_bits, l.group_size))
    return "layout: head_dim must be 64/128, warm_bits 2/4/8, group_size 32/64/128 and <= head_dim";
  if (l.hot_capacity < 1 || l.warm_capacity < 0) return "layout: hot_capacity >= 1 and warm_capacity >= 0";
  if (static_cast<long long>(l.hot_capacity) + l.warm_capacity > (1ll << 30))
    return "layout: hot_capacity + warm_capacity must be <= 2^30";
  if (!DtypeOk(l.dtype)) return "layout.dtype must be fp32, fp16 or bf16";
  return nullptr;
}

const char* TiersValidate(const AkvTiers& t, const AkvLayout& l) {
  if (!t.hot_k || !t.hot_v || !t.hot_pos || !t.hot_score || !t.counts) return "tiers: hot buffers and counts must be non-null";
  if (l.warm_capacity > 0 && (!t.warm_k || !t.warm_v || !t.warm_k_scale || !t.warm_k_zero || !t.warm_v_scale ||
                              !t.warm_v_zero || !t.warm_pos || !t.warm_score || !t.warm_a))
    return "tiers: warm buffers must be non-null when warm_capacity > 0";
  return nullptr;
}

}  // namespace

bool AkvQuantSupports(int head_dim, int bits, int group_size) {
  const bool d_ok = head_dim == 64 || head_dim == 128;
  const bool b_ok = bits == 2 || bits == 4 || bits == 8;
  const bool g_ok = (group_size == 32 || group_size == 64 || group_size == 128) && group_size <= head_dim;
  return d_ok && b_ok && g_ok;
}

bool AkvCudaSupports(int head_dim, KvDType dtype, int bits) {
  return (head_dim == 64 || head_dim == 128) && (dtype == KvDType::kBf16 || dtype == KvDType::kFp32) &&
         (bits == 2 || bits == 4 || bits == 8);
}

const char* AkvQuantizeValidate(const AkvQuantizeParams& p) {
  if (p.rows < 0 || p.num_kv_heads < 1) return "rows must be >= 0 and num_kv_heads >= 1";
  if (!AkvQuantSupports(p.head_dim, p.bits, p.group_size))
    return "head_dim must be 64/128, bits 2/4/8, group_size 32/64/128 and <= head_dim";
  if (!DtypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  if (p.x_row_stride != 0 && p.x_row_stride < static_cast<int64_t>(p.num_kv_heads) * p.head_dim)
    return "x_row_stride must be 0 or >= num_kv_heads * head_dim";
  if (p.rows > 0 && (!p.x || !p.codes || !p.scale || !p.zero)) return "x, codes, scale and zero must be non-null";
  return nullptr;
}

const char* AkvDequantValidate(const AkvDequantParams& p) {
  if (p.rows < 0 || p.num_kv_heads < 1) return "rows must be >= 0 and num_kv_heads >= 1";
  if (!AkvQuantSupports(p.head_dim, p.bits, p.group_size))
    return "head_dim must be 64/128, bits 2/4/8, group_size 32/64/128 and <= head_dim";
  if (!DtypeOk(p.dtype)) return "dtype must be fp32, fp16 or bf16";
  if (p.rows > 0 && (!p.x || !p.codes || !p.scale || !p.zero)) return "x, codes, scale and zero must be non-null";
  return nullptr;
}

int PlanAkvAttentionSplits(int num_rows, int num_heads, int num_kv_heads, int max_tokens, int num_sms,
                           int side_by_side, bool one_launch) {
  if (num_rows != 1 || num_heads <= 0 || num_kv_heads <= 0 || max_tokens <= 0 || num_sms <= 0) return 1;
  const long long share = std::max(1, side_by_side);
  if (num_heads % num_kv_heads != 0) return 1;
  const int group = num_heads / num_kv_heads, chunks = (group + 7) / 8, hc = (group + chunks - 1) / chunks;
  int qv = 1;
  while (qv < hc) qv *= 2;
  if (group <= kAkvAttnMmaMaxGroup) {  // tensor-core kernel: CTAs of hc warps, ~16 warps per SM
    // Side-by-side chains: two waves, they do not start together (H100,
    // batch bench at B = 8/32: one wave 13-27% slower than two). One
    // batched launch: four, and up to eight while splits keep >= 256 tokens
    // (B = 32: 8K 73% of copy at four waves vs 69% at two, 62% at sixteen;
    // 32K 78% at eight vs 74% at four; B = 8, 32K: 66% at four vs 60% at
    // two; akv_attention_batch_launch_sweep_s18_h100.json).
    const int hc = AkvMmaKvHeadsPerCta(num_kv_heads);
    const long long per_sm = std::max(1, 16 / hc), base = num_kv_heads / hc;
    const long long slots = per_sm * num_sms / base;  // one wave of CTAs: each sequence gets slots / share
    // One sequence alone: one wave (H100, B = 1: 256 splits beat 528 by 15%
    // at 32K and 9% at 128K; every split more is merge work and a CTA
    // prologue on the critical path; akv_attention_batch_b1_split_merge_s19_h100.json).
    const long long want =
        share == 1  ? slots
        : one_launch ? std::max(4 * slots / share, std::min<long long>(8 * slots / share, max_tokens / 256))
                     : 2 * slots / share;
    const long long splits = std::min({std::max<long long>(1, want),
                                       std::max<long long>(1, max_tokens / kAkvAttnMmaMinSplitTokens),
                                       static_cast<long long>(kAkvAttnMaxSplits)});
    return static_cast<int>(splits);
  }
  const long long base = static_cast<long long>(num_kv_heads) * chunks;
  // Resident CTAs per SM of the attention kernel (its __launch_bounds__).
  const long long per_sm = qv == 1 ? 4 : (qv <= 4 ? 3 : 2);
  long long splits = std::max<long long>(1, per_sm * num_sms / (base * share));
  splits = std::min({splits, std::max<long long>(1, max_tokens / kAkvAttnMinSplitTokens),
                     static_cast<long long>(kAkvAttnMaxSplits)});
  return static_cast<int>(splits);
}

const char* AkvAttentionValidate(const AkvAttentionParams& p) {
  if (const char* e = LayoutValidate(p.layout)) return e;
  if (p.num_rows < 0) return "num_rows must be >= 0";
  if (p.num_heads < p.layout.num_kv_heads || p.num_heads % p.layout.num_kv_heads != 0)
    return "num_heads must be a positive multiple of layout.num_kv_heads";
  if (p.layer < 0) return "layer must be >= 0";
  if (p.num_splits < 1 || p.num_splits > kAkvAttnMaxSplits) return "num_splits must be in [1, kAkvAttnMaxSplits]";
  if (p.num_splits > 1 && (!p.partial_out || !p.partial_lse))
    return "num_splits > 1 needs partial_out and partial_lse (see AkvAttentionWorkspace)";
  if (!std::isfinite(p.scale)) return "scale must be finite";
  if (p.q_stride_m < 0 || p.q_stride_h < 0) return "q strides must be >= 0 (0 = packed)";
  if (p.num_rows == 0) return nullptr;
  if (p.batch != nullptr) {  // batched decode: the rows' tiers are checked where they are readable (the twin)
    if (p.num_rows > kAkvAttnMaxBatch) return "batched decode: num_rows (sequences) must be <= kAkvAttnMaxBatch";
    if (!p.q || !p.out) return "q and out must be non-null";
    return nullptr;
  }
  if (const char* e = TiersValidate(p.tiers, p.layout)) return e;
  if (!p.q || !p.q_pos || !p.out) return "q, q_pos and out must be non-null";
  return nullptr;
}

const char* AkvAttnSeqValidate(const AkvAttnSeq& s, const AkvLayout& launch) {
  if (s.hot_capacity < 1 || s.hot_capacity > launch.hot_capacity || s.warm_capacity < 0 ||
      s.warm_capacity > launch.warm_capacity)
    return "batch->seq[i]: capacities must be in [1, layout.hot_capacity] and [0, layout.warm_capacity]";
  AkvLayout lay = launch;
  lay.hot_capacity = s.hot_capacity;
  lay.warm_capacity = s.warm_capacity;
  if (const char* e = TiersValidate(s.tiers, lay)) return e;
  if (!s.q_pos) return "batch->seq[i]->q_pos must be non-null";
  return nullptr;
}

size_t AkvScoreWorkspaceWords(int max_positions) {
  const size_t words = (static_cast<size_t>(std::max(max_positions, 1)) + 31) / 32;
  return 2 * words + 1;  // position bitmap, its prefix popcounts, max u
}

const char* AkvScoreValidate(const AkvScoreParams& p) {
  if (const char* e = LayoutValidate(p.layout)) return e;
  if (p.num_rows < 0) return "num_rows must be >= 0";
  if (p.num_heads < p.layout.num_kv_heads || p.num_heads % p.layout.num_kv_heads != 0)
    return "num_heads must be a positive multiple of layout.num_kv_heads";
  if (p.mode != AkvScoring::kImportance && p.mode != AkvScoring::kHybrid && p.mode != AkvScoring::kFifo)
    return "mode must be IMPORTANCE, HYBRID or FIFO";
  if (!(p.decay >= 0.0f && p.decay < 1.0f)) return "decay must be in [0, 1)";
  if (!(p.attention_weight >= 0.0f && p.attention_weight <= 1.0f) ||
      !(p.recency_weight >= 0.0f && p.recency_weight <= 1.0f))
    return "attention_weight and recency_weight must be in [0, 1]";
  if (!std::isfinite(p.scale)) return "scale must be finite";
  if (p.q_stride_m < 0 || p.q_stride_h < 0) return "q strides must be >= 0 (0 = packed)";
  if ((p.q_keep == nullptr) != (p.lse_keep == nullptr)) return "q_keep and lse_keep: set both or neither";
  if (p.num_rows == 0 || p.mode == AkvScoring::kFifo) return nullptr;
  if (const char* e = TiersValidate(p.tiers, p.layout)) return e;
  if (!p.q || !p.q_pos || !p.lse) return "q, q_pos and lse must be non-null";
  return nullptr;
}

const char* AkvSelectValidate(const AkvSelectParams& p) {
  if (const char* e = LayoutValidate(p.layout)) return e;
  if (p.num_layers < 0) return "num_layers must be >= 0";
  const AkvPolicy& q = p.policy;
  if (q.mode != AkvScoring::kImportance && q.mode != AkvScoring::kHybrid && q.mode != AkvScoring::kFifo)
    return "policy.mode must be IMPORTANCE, HYBRID or FIFO";
  if (q.hot_budget < 1 || q.warm_budget < 0 || q.eviction_batch_size < 1)
    return "policy: hot_budget >= 1, warm_budget >= 0, eviction_batch_size >= 1";
  if (q.initial_tokens_protected < 0 || q.recent_tokens_protected < 0 || q.n_anchors < 0 ||
      q.promote_max_per_step < 0)
    return "policy: protected counts, n_anchors and promote_max_per_step must be >= 0";
  if (!(q.promote_threshold >= 0.0f)) return "policy.promote_threshold must be >= 0";
  if (p.num_layers == 0) return nullptr;
  if (const char* e = TiersValidate(p.tiers, p.layout)) return e;
  if (!p.lists.demote || !p.lists.promote || !p.lists.cold) return "lists must be non-null";
  return nullptr;
}

const char* AkvMigrateValidate(const AkvMigrateParams& p) {
  if (const char* e = LayoutValidate(p.layout)) return e;
  if (p.num_layers < 0) return "num_layers must be >= 0";
  if (p.num_layers == 0) return nullptr;
  if (const char* e = TiersValidate(p.tiers, p.layout)) return e;
  if (!p.lists.demote || !p.lists.promote || !p.lists.cold) return "lists must be non-null";
  const AkvColdStage& s = p.stage;
  const bool any = s.k || s.v || s.k_scale || s.k_zero || s.v_scale || s.v_zero || s.pos || s.score;
  const bool all = s.k && s.v && s.k_scale && s.k_zero && s.v_scale && s.v_zero && s.pos && s.score;
  if (any && !all) return "stage: set every pointer or none";
  return nullptr;
}

const char* AkvColdAppendValidate(const AkvColdAppendParams& p) {
  if (const char* e = LayoutValidate(p.layout)) return e;
  if (p.num_layers < 0 || p.warm_limit < 0) return "num_layers and warm_limit must be >= 0";
  if (p.num_layers == 0) return nullptr;
  if (p.layout.warm_capacity == 0) return "layout.warm_capacity must be > 0 (rows go to warm)";
  if (const char* e = TiersValidate(p.tiers, p.layout)) return e;
  const AkvColdStage& s = p.stage;
  if (!s.k || !s.v || !s.k_scale || !s.k_zero || !s.v_scale || !s.v_zero || !s.pos || !s.score || !p.rows)
    return "stage (every pointer) and rows must be non-null";
  if (s.rows_per_layer < 0) return "stage.rows_per_layer must be >= 0";
  return nullptr;
}

const char* AkvAppendValidate(const AkvAppendParams& p) {
  if (const char* e = LayoutValidate(p.layout)) return e;
  if (p.rows < 0 || p.layer < 0) return "rows and layer must be >= 0";
  if (p.row_stride != 0 && p.row_stride < static_cast<int64_t>(p.layout.num_kv_heads) * p.layout.head_dim)
    return "row_stride must be 0 or >= num_kv_heads * head_dim";
  if (p.rows == 0) return nullptr;
  if (p.batch != nullptr) {
    if (p.rows > kAkvAttnMaxBatch) return "batched append: rows (sequences) must be <= kAkvAttnMaxBatch";
    if (!p.k || !p.v) return "k and v must be non-null";
    return nullptr;
  }
  if (const char* e = TiersValidate(p.tiers, p.layout)) return e;
  if (!p.k || !p.v || !p.pos) return "k, v and pos must be non-null";
  return nullptr;
}

}  // namespace kvstream
