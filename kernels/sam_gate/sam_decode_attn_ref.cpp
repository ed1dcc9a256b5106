// CPU twin of sam_decode_attn (sam_gate.md §4 decode step 3): ring rows
// dequantized with the shared codec (bit-identical x^), per (sequence, head,
// split) an exact two-pass softmax in double, splits merged by lse as the GPU
// merge kernel does. Also the engine's CPU decode attention: a step costs
// O(B * H * C * D), C = the ring capacity, independent of context (O(1)).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/sam_gate/sam_decode_attn.h"
#include "kernels/sam_gate/sam_ring_io.h"

namespace kvstream {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Softmax-weighted V of one query over the valid slots of [begin, end) of
// ring group j: o (D doubles, normalised) and its natural-log lse (-inf and
// zeros when the range holds no valid slot).
void AttendRange(const SamRingDesc& r, int j, const float* q, int D, double scale, int begin, int end,
                 std::vector<float>& row, double* o, double* lse) {
  const int C = r.Capacity(), rb = SamRowBytes(D, r.bits, r.group_size);
  std::fill(o, o + D, 0.0);
  std::vector<double> z(std::max(end - begin, 0), kNegInf);
  double m = kNegInf;
  for (int s = begin; s < end; ++s) {
    if (r.slot_pos[s] < 0) continue;
    SamDecodeRowHost(r.k + SamRowOffset(j, s, C, rb), D, r.bits, r.group_size, row.data());
    double dot = 0.0;
    for (int c = 0; c < D; ++c) dot += static_cast<double>(q[c]) * row[c];
    z[s - begin] = dot * scale;
    m = std::max(m, z[s - begin]);
  }
  if (m == kNegInf) {
    *lse = kNegInf;
    return;
  }
  double l = 0.0;
  for (int s = begin; s < end; ++s) {
    if (z[s - begin] == kNegInf) continue;
    const double w = std::exp(z[s - begin] - m);
    l += w;
    SamDecodeRowHost(r.v + SamRowOffset(j, s, C, rb), D, r.bits, r.group_size, row.data());
    for (int c = 0; c < D; ++c) o[c] += w * row[c];
  }
  for (int c = 0; c < D; ++c) o[c] /= l;
  *lse = m + std::log(l);
}

}  // namespace

int PlanSamDecodeSplits(int num_seqs, int num_heads, int max_capacity, int num_sms) {
  const long long ctas = static_cast<long long>(std::max(num_seqs, 1)) * std::max(num_heads, 1);
  const long long want = (2ll * std::max(num_sms, 1) + ctas - 1) / ctas;
  const int by_len = std::max(1, max_capacity / kSamAttnMinSplitSlots);
  return static_cast<int>(std::clamp<long long>(std::min<long long>(want, by_len), 1, kSamAttnMaxSplits));
}

const char* SamDecodeAttnValidate(const SamDecodeAttnParams& p) {
  if (p.num_seqs < 0) return "num_seqs must be >= 0";
  if (p.head_dim != 64 && p.head_dim != 128) return "head_dim must be 64 or 128";
  if (p.num_kv_heads < 1 || p.num_heads < p.num_kv_heads || p.num_heads % p.num_kv_heads != 0 || p.num_heads > 256)
    return "num_heads must be a multiple of num_kv_heads (>= 1) and <= 256";
  if (p.num_splits < 1 || p.num_splits > kSamAttnMaxSplits) return "num_splits must be in [1, 64]";
  if (p.num_seqs > 0 && (!p.rings || !p.q || !p.v_new || !p.out)) return "rings, q, v_new and out must be non-null";
  if (p.k_new && !p.pos) return "pos must be non-null when k_new is set (fused append)";
  if (p.num_splits > 1 && (!p.partial_out || !p.partial_lse))
    return "partial_out and partial_lse must be non-null when num_splits > 1";
  if (p.q_stride_b != 0 && p.q_stride_b < int64_t(p.num_heads) * p.head_dim) return "q_stride_b must be 0 or >= H * D";
  if (p.v_stride_b != 0 && p.v_stride_b < int64_t(p.num_kv_heads) * p.head_dim)
    return "v_stride_b must be 0 or >= Hk * D";
  if (!std::isfinite(p.scale) || p.scale <= 0.0f) return "scale must be finite and > 0";
  if (p.dtype != KvDType::kFp32 && p.dtype != KvDType::kFp16 && p.dtype != KvDType::kBf16)
    return "dtype must be fp32, fp16 or bf16";
  return nullptr;
}

bool SamDecodeAttnRef(const SamDecodeAttnParams& p) {
  if (SamDecodeAttnValidate(p) != nullptr) return false;
  for (int b = 0; b < p.num_seqs; ++b) {
    if (SamRingDescValidate(p.rings[b], p.num_heads, p.num_kv_heads, p.head_dim) != nullptr) return false;
  }
  const int D = p.head_dim, H = p.num_heads, G = H / p.num_kv_heads, S = p.num_splits;
  const int64_t qsb = p.q_stride_b ? p.q_stride_b : int64_t(H) * D;
  const int64_t vsb = p.v_stride_b ? p.v_stride_b : int64_t(p.num_kv_heads) * D;
  if (p.k_new) {  // fused append: sam_kv_write of row b into rings[b], then attend
    std::vector<int32_t> row_seq(p.num_seqs), seq_len(p.num_seqs);
    for (int b = 0; b < p.num_seqs; ++b) {
      row_seq[b] = b;
      seq_len[b] = p.pos[b] < 0 ? 0 : p.pos[b] + 1;
    }
    SamKvWriteParams w;
    w.k = p.k_new;
    w.v = p.v_new;
    w.pos = p.pos;
    w.row_seq = row_seq.data();
    w.seq_len = seq_len.data();
    w.rings = p.rings;
    w.stride_n = vsb;
    w.num_rows = p.num_seqs;
    w.num_seqs = p.num_seqs;
    w.num_kv_heads = p.num_kv_heads;
    w.head_dim = D;
    w.dtype = p.dtype;
    if (!SamKvWriteRef(w)) return false;
  }
  std::vector<float> q(D), row(D);
  std::vector<double> part(static_cast<size_t>(S) * D), lse(S), merged(D);
  for (int b = 0; b < p.num_seqs; ++b) {
    const SamRingDesc& r = p.rings[b];
    for (int h = 0; h < H; ++h) {
      const int64_t orow = (int64_t(b) * H + h) * D;
      const int j = r.head_ring_group[h];
      if (j < 0) {  // dropped head (C7)
        for (int c = 0; c < D; ++c) {
          const float v = r.dropped_mode == SamDroppedHeadMode::kSelf
                              ? LoadAsFloat(p.v_new, b * vsb + int64_t(h / G) * D + c, p.dtype)
                              : 0.0f;
          StoreFromFloat(p.out, orow + c, v, p.dtype);
        }
        continue;
      }
      for (int c = 0; c < D; ++c) q[c] = LoadAsFloat(p.q, b * qsb + int64_t(h) * D + c, p.dtype);
      for (int s = 0; s < S; ++s) {
        int beg = 0, end = 0;
        SamDecodeSplitRange(r.Capacity(), S, s, &beg, &end);
        AttendRange(r, j, q.data(), D, p.scale, beg, end, row, &part[static_cast<size_t>(s) * D], &lse[s]);
      }
      if (S == 1) {
        std::copy(part.begin(), part.begin() + D, merged.begin());
      } else {
        const size_t prow = (static_cast<size_t>(b) * H + h) * S;
        double mx = kNegInf;
        for (int s = 0; s < S; ++s) {
          p.partial_lse[prow + s] = static_cast<float>(lse[s]);
          for (int c = 0; c < D; ++c) p.partial_out[(prow + s) * D + c] = static_cast<float>(part[s * D + c]);
          mx = std::max(mx, lse[s]);
        }
        std::fill(merged.begin(), merged.end(), 0.0);
        if (mx != kNegInf) {
          double l = 0.0;
          for (int s = 0; s < S; ++s) {
            const double w = std::exp(lse[s] - mx);
            l += w;
            for (int c = 0; c < D; ++c) merged[c] += w * part[s * D + c];
          }
          for (int c = 0; c < D; ++c) merged[c] /= l;
        }
      }
      for (int c = 0; c < D; ++c) StoreFromFloat(p.out, orow + c, static_cast<float>(merged[c]), p.dtype);
    }
  }
  return true;
}

}  // namespace kvstream
