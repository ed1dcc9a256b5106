// CPU twin of LaunchDenseDecode: same Params, host pointers, fp32 math.
//
// Per (b, h, split): an exact two-pass softmax over the split's tokens
// (DenseDecodeSplitRange), giving a normalised partial output and its
// natural-log log-sum-exp; then the splits are merged by log-sum-exp exactly as
// the GPU merge kernel does. With num_splits == 1 the single "split" is the
// whole sequence and is written straight to out. The GPU's online softmax
// reorders the same sums, so twin and kernel agree to fp32 rounding (before the
// final rounding of out to dtype).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/dense/dense_decode.h"

namespace kvstream {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Offset (elements) of token t of KV head kvh of sequence b in a pool, or -1 if
// its page id is outside [0, num_blocks).
int64_t PoolOffset(const DenseDecodeParams& p, int b, int kvh, int t) {
  const int page = p.block_table[static_cast<int64_t>(b) * p.max_blocks_per_seq + t / p.page_size];
  if (page < 0 || page >= p.num_blocks) return -1;
  return ((static_cast<int64_t>(page) * p.num_kv_heads + kvh) * p.page_size + t % p.page_size) *
         p.head_dim;
}

int LiveLength(const DenseDecodeParams& p, int b) {
  const long long cap = static_cast<long long>(p.max_blocks_per_seq) * p.page_size;
  return static_cast<int>(std::clamp<long long>(p.seq_lens[b], 0, cap));
}

// Softmax-weighted sum of V over tokens [begin, end) for query `qv` (already
// fp32, D values). Writes the normalised output into o (D values) and returns
// the natural-log log-sum-exp of the scaled scores (-inf and zeros if empty).
float AttendRange(const DenseDecodeParams& p, int b, int kvh, const float* qv, int begin, int end,
                  std::vector<float>& scores, float* o) {
  const int d_count = p.head_dim;
  std::fill(o, o + d_count, 0.0f);
  if (begin >= end) return kNegInf;
  scores.assign(end - begin, 0.0f);
  float m = kNegInf;
  for (int t = begin; t < end; ++t) {
    const int64_t off = PoolOffset(p, b, kvh, t);
    float dot = 0.0f;
    for (int d = 0; d < d_count; ++d) dot += qv[d] * LoadAsFloat(p.k_pool, off + d, p.dtype);
    scores[t - begin] = dot * p.scale;
    m = std::max(m, scores[t - begin]);
  }
  float l = 0.0f;
  for (int t = begin; t < end; ++t) {
    const float w = std::exp(scores[t - begin] - m);
    l += w;
    const int64_t off = PoolOffset(p, b, kvh, t);
    for (int d = 0; d < d_count; ++d) o[d] += w * LoadAsFloat(p.v_pool, off + d, p.dtype);
  }
  for (int d = 0; d < d_count; ++d) o[d] /= l;
  return m + std::log(l);
}

// Checks every page id the twin will read.
bool PageIdsInRange(const DenseDecodeParams& p) {
  for (int b = 0; b < p.batch; ++b) {
    const int t = LiveLength(p, b);
    const int pages = (t + p.page_size - 1) / p.page_size;
    for (int i = 0; i < pages; ++i) {
      const int id = p.block_table[static_cast<int64_t>(b) * p.max_blocks_per_seq + i];
      if (id < 0 || id >= p.num_blocks) return false;
    }
  }
  return true;
}

// Fused append: token T-1 of every sequence gets the rows of k_new/v_new.
void AppendNewRows(const DenseDecodeParams& p) {
  const int64_t stride = p.new_stride_b ? p.new_stride_b : static_cast<int64_t>(p.num_kv_heads) * p.head_dim;
  for (int b = 0; b < p.batch; ++b) {
    const int t = LiveLength(p, b) - 1;
    if (t < 0) continue;
    for (int kvh = 0; kvh < p.num_kv_heads; ++kvh) {
      const int64_t dst = PoolOffset(p, b, kvh, t), src = b * stride + static_cast<int64_t>(kvh) * p.head_dim;
      for (int d = 0; d < p.head_dim; ++d) {
        StoreFromFloat(p.k_pool, dst + d, LoadAsFloat(p.k_new, src + d, p.dtype), p.dtype);
        StoreFromFloat(p.v_pool, dst + d, LoadAsFloat(p.v_new, src + d, p.dtype), p.dtype);
      }
    }
  }
}

}  // namespace

bool DenseDecodeRef(const DenseDecodeParams& p) {
  if (DenseDecodeValidate(p) != nullptr) return false;
  if (p.batch == 0) return true;
  if (!PageIdsInRange(p)) return false;

  const int d_count = p.head_dim;
  const int group = p.num_heads / p.num_kv_heads;
  const int splits = p.num_splits;
  const int64_t qsb = p.q_stride_b ? p.q_stride_b : static_cast<int64_t>(p.num_heads) * d_count;
  const int64_t qsh = p.q_stride_h ? p.q_stride_h : d_count;
  const int64_t osb = p.out_stride_b ? p.out_stride_b : static_cast<int64_t>(p.num_heads) * d_count;
  const int64_t osh = p.out_stride_h ? p.out_stride_h : d_count;

  if (p.k_new != nullptr) AppendNewRows(p);

  std::vector<float> qv(d_count), scores;
  std::vector<float> part(static_cast<size_t>(splits) * d_count), lse(splits), merged(d_count);
  for (int b = 0; b < p.batch; ++b) {
    const int t_len = LiveLength(p, b);
    for (int h = 0; h < p.num_heads; ++h) {
      const int kvh = h / group;
      for (int d = 0; d < d_count; ++d) qv[d] = LoadAsFloat(p.q, b * qsb + h * qsh + d, p.dtype);
      for (int s = 0; s < splits; ++s) {
        int begin = 0, end = 0;
        DenseDecodeSplitRange(t_len, splits, s, &begin, &end);
        lse[s] = AttendRange(p, b, kvh, qv.data(), begin, end, scores, &part[static_cast<size_t>(s) * d_count]);
      }
      if (splits == 1) {
        std::copy(part.begin(), part.begin() + d_count, merged.begin());
      } else {
        const size_t row = (static_cast<size_t>(b) * p.num_heads + h) * splits;
        for (int s = 0; s < splits; ++s) {
          p.partial_lse[row + s] = lse[s];
          std::copy(&part[static_cast<size_t>(s) * d_count], &part[static_cast<size_t>(s + 1) * d_count],
                    p.partial_out + (row + s) * d_count);
        }
        // Merge: out = sum_s exp(lse_s - M) * part_s / sum_s exp(lse_s - M).
        const float m = *std::max_element(lse.begin(), lse.end());
        std::fill(merged.begin(), merged.end(), 0.0f);
        if (m != kNegInf) {
          float l = 0.0f;
          for (int s = 0; s < splits; ++s) {
            const float w = std::exp(lse[s] - m);
            l += w;
            for (int d = 0; d < d_count; ++d) merged[d] += w * part[static_cast<size_t>(s) * d_count + d];
          }
          for (int d = 0; d < d_count; ++d) merged[d] /= l;
        }
      }
      for (int d = 0; d < d_count; ++d) StoreFromFloat(p.out, b * osb + h * osh + d, merged[d], p.dtype);
    }
  }
  return true;
}

}  // namespace kvstream
