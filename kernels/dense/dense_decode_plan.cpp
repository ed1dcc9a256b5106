// Host-side planning for the dense decode kernel: supported shapes, split
// planner, workspace size and parameter validation. Plain C++ (no CUDA), shared
// by the launcher (kvstream_kernels_cuda links kvstream_kernels) and the twin.
#include <algorithm>
#include <cmath>

#include "kernels/dense/dense_decode.h"

namespace kvstream {

bool DenseDecodeSupports(int head_dim, KvDType dtype) {
  const bool dim_ok = head_dim == 64 || head_dim == 128;
  const bool type_ok = dtype == KvDType::kFp32 || dtype == KvDType::kFp16 || dtype == KvDType::kBf16;
  return dim_ok && type_ok;
}

int DenseDecodeGroupChunk(int group) {
  if (group <= 0) return 1;
  for (int c = std::min(group, kDenseDecodeMaxGroupChunk); c > 1; --c) {
    if (group % c == 0) return c;
  }
  return 1;
}

int DenseDecodeSplitCtasPerSm(double peak_dram_gbps) {
  return peak_dram_gbps >= kDenseDecodeFastMemoryGbps ? kDenseDecodeFastMemorySplitCtasPerSm
                                                      : kDenseDecodeSplitCtasPerSm;
}

int PlanDenseDecodeSplits(int batch, int num_heads, int num_kv_heads, int max_seq_len, int num_sms,
                          int split_ctas_per_sm) {
  if (batch <= 0 || num_heads <= 0 || num_kv_heads <= 0 || max_seq_len <= 0 || num_sms <= 0) return 1;
  if (split_ctas_per_sm < 1) split_ctas_per_sm = kDenseDecodeSplitCtasPerSm;
  if (num_heads % num_kv_heads != 0) return 1;
  const int group = num_heads / num_kv_heads;
  const long long base_ctas =
      static_cast<long long>(batch) * num_kv_heads * (group / DenseDecodeGroupChunk(group));
  const long long wave = static_cast<long long>(num_sms) * split_ctas_per_sm;
  // Fill at most one wave (half occupancy, or full on fast memory): a partial
  // second wave would leave SMs idle at the tail.
  long long splits = std::max<long long>(1, wave / base_ctas);
  // Each split must carry enough tokens to amortise its partial write and the merge.
  const long long by_len = std::max(1, max_seq_len / kDenseDecodeMinSplitTokens);
  splits = std::min({splits, by_len, static_cast<long long>(kDenseDecodeMaxSplits)});
  // NOTE(kvstream): from 8 up, rounded down to a multiple of 8 (the merge loads
  // partials 8 splits at a time). H100 fused sweep (bench/results/gpu/
  // dense_decode_s10_h100.json): (1,32K) S=32 53.9 us vs the H100's
  // half-occupancy wave's S=33 55.3 us; (1,8K) 21.0 vs 21.5; (1,128K) equal. A power of two
  // would also fit 132 SMs but drop 108 / 114 SMs' 27 / 28 splits to 16.
  return static_cast<int>(splits >= 8 ? splits / 8 * 8 : splits);
}

const char* DenseDecodeValidate(const DenseDecodeParams& p) {
  if (p.batch < 0) return "batch must be >= 0";
  if (p.num_kv_heads < 1) return "num_kv_heads must be >= 1";
  if (p.num_heads < p.num_kv_heads || p.num_heads % p.num_kv_heads != 0)
    return "num_heads must be a positive multiple of num_kv_heads";
  if (!DenseDecodeSupports(p.head_dim, p.dtype))
    return "unsupported (head_dim, dtype): head_dim must be 64 or 128, dtype fp32/fp16/bf16";
  if (p.page_size < 1) return "page_size must be >= 1";
  if (p.num_blocks < 1) return "num_blocks must be >= 1";
  if (p.max_blocks_per_seq < 1) return "max_blocks_per_seq must be >= 1";
  if (static_cast<long long>(p.max_blocks_per_seq) * p.page_size > (1ll << 30))
    return "max_blocks_per_seq * page_size must be <= 2^30 tokens";
  if (p.max_seq_len < 0 || static_cast<long long>(p.max_seq_len) >
                               static_cast<long long>(p.max_blocks_per_seq) * p.page_size)
    return "max_seq_len must be in [0, max_blocks_per_seq * page_size]";
  if (p.num_splits < 1 || p.num_splits > kDenseDecodeMaxSplits)
    return "num_splits must be in [1, kDenseDecodeMaxSplits]";
  if (p.num_splits > 1 && (p.partial_out == nullptr || p.partial_lse == nullptr))
    return "num_splits > 1 needs partial_out and partial_lse (see DenseDecodeWorkspace)";
  if (!std::isfinite(p.scale)) return "scale must be finite";
  if (p.q_stride_b < 0 || p.q_stride_h < 0 || p.out_stride_b < 0 || p.out_stride_h < 0 || p.new_stride_b < 0)
    return "strides must be >= 0 (0 = packed)";
  if ((p.k_new == nullptr) != (p.v_new == nullptr)) return "k_new and v_new must be both set or both null";
  if (p.batch == 0) return nullptr;  // nothing is read or written
  if (p.q == nullptr || p.k_pool == nullptr || p.v_pool == nullptr || p.block_table == nullptr ||
      p.seq_lens == nullptr || p.out == nullptr)
    return "q, k_pool, v_pool, block_table, seq_lens and out must be non-null";
  return nullptr;
}

}  // namespace kvstream
