// CPU twin of K2 sq_attend (spectral_quant.md §4.4, §7): z^ reconstructed as
// K3 does, scores in double, the direct two-pass softmax over all visible
// keys (compressed and dense share one denominator). Also the split planner
// and the validator the launcher shares.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/spectral_quant/sq_attend.h"

namespace kvstream {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kSqrtHalfPi = 1.2533141373155002512;  // sqrt(pi / 2), §4.4

// z^ of one record (K3's formula, fp32).
void Reconstruct(const uint32_t* rec, const SqPlanView& plan, const float* tables, int h, int D, float* out) {
  for (int i = 0; i < D; ++i) {
    const int w = plan.width[h * D + i];
    const uint32_t code = SqReadField(rec, plan.bit_offset[h * D + i], w);
    out[i] = plan.scale[h * D + i] * tables[SqCentroidOffset(w) + code];
  }
}

}  // namespace

int SqPlanAttendSplits(int num_q_heads, int num_kv_heads, int num_queries, int num_keys_total, int num_sms) {
  if (num_q_heads <= 0 || num_kv_heads <= 0 || num_queries <= 0 || num_keys_total <= 0 || num_sms <= 0) return 1;
  const int group = std::max(1, num_q_heads / num_kv_heads);
  const long long rows = static_cast<long long>(group) * num_queries;
  const long long tiles = (rows + kSqAttendRowTile - 1) / kSqAttendRowTile;
  const long long base = static_cast<long long>(num_kv_heads) * tiles;
  const long long wave = static_cast<long long>(kSqAttendCtasPerSm) * num_sms;
  long long splits = std::max<long long>(1, wave / base);
  const long long by_len = std::max(1, num_keys_total / kSqAttendMinSplitKeys);
  splits = std::min({splits, by_len, static_cast<long long>(kSqAttendMaxSplits)});
  return static_cast<int>(splits);
}

const char* SqAttendValidate(const SqAttendParams& p) {
  if (!SqSupportsHeadDim(p.head_dim)) return "head_dim must be 64 or 128";
  if (p.num_kv_heads < 1 || p.num_q_heads < p.num_kv_heads || p.num_q_heads % p.num_kv_heads != 0)
    return "num_q_heads must be a positive multiple of num_kv_heads";
  if (p.num_queries < 0 || p.num_keys < 0 || p.num_dense < 0) return "num_queries, num_keys, num_dense must be >= 0";
  if (static_cast<long long>(p.num_keys) + p.num_dense > (1ll << 30)) return "num_keys + num_dense must be <= 2^30";
  if (p.num_splits < 1 || p.num_splits > kSqAttendMaxSplits) return "num_splits must be in [1, kSqAttendMaxSplits]";
  if (!std::isfinite(p.scale)) return "scale must be finite";
  if (p.dense_stride_t < 0) return "dense_stride_t must be >= 0 (0 = Hkv * D)";
  if (p.dense_dtype != KvDType::kBf16 && p.dense_dtype != KvDType::kFp32) return "dense_dtype must be bf16 or fp32";
  if (p.num_queries == 0) return nullptr;
  if (!p.q_rot || !p.a_eig || !p.tables) return "q_rot, a_eig and tables must be non-null";
  if (p.num_keys > 0) {
    if (!p.k_records || !p.v_records) return "k_records and v_records must be non-null when num_keys > 0";
    const SqPlanView* plans[2] = {&p.k_plan, &p.v_plan};
    for (const SqPlanView* pl : plans) {
      if (!pl->width || !pl->scale || !pl->bit_offset) return "k_plan / v_plan arrays must be non-null";
      if (pl->words < 1 || pl->words > kSqMaxRecordWords + 1) return "k_plan.words / v_plan.words must be in [1, 33]";
    }
    if (p.q_sketch && (!p.k_rnorm || !p.k_signs || !p.k_plan.d_eff || p.sign_words < 1 ||
                       p.sign_words > p.head_dim / 32))
      return "QJL (q_sketch) needs k_rnorm, k_signs, k_plan.d_eff and sign_words in [1, D/32]";
  }
  if (p.num_dense > 0 && (!p.dense_k || !p.dense_v || !p.q_raw || !p.a_dense))
    return "dense_k, dense_v, q_raw and a_dense must be non-null when num_dense > 0";
  if (p.num_splits > 1 && !p.workspace) return "num_splits > 1 needs a workspace (SqAttendWorkspaceBytes)";
  return nullptr;
}

bool SqAttendRef(const SqAttendParams& p) {
  if (SqAttendValidate(p) != nullptr) return false;
  const int D = p.head_dim, Hkv = p.num_kv_heads, G = p.num_q_heads / Hkv, Tq = p.num_queries;
  const int Tk = SqLiveKeys(p), Td = p.num_dense, n = Tk + Td;
  const int64_t ds = p.dense_stride_t ? p.dense_stride_t : static_cast<int64_t>(Hkv) * D;
  const bool qjl = p.q_sketch != nullptr;
  std::vector<float> zk(static_cast<size_t>(Tk) * D), zv(static_cast<size_t>(Tk) * D);
  std::vector<double> logit(n), acc_e(D), acc_d(D);
  for (int h = 0; h < Hkv; ++h) {
    for (int j = 0; j < Tk; ++j) {
      Reconstruct(p.k_records + (static_cast<int64_t>(j) * Hkv + h) * p.k_plan.words, p.k_plan, p.tables, h, D,
                  &zk[static_cast<size_t>(j) * D]);
      Reconstruct(p.v_records + (static_cast<int64_t>(j) * Hkv + h) * p.v_plan.words, p.v_plan, p.tables, h, D,
                  &zv[static_cast<size_t>(j) * D]);
    }
    for (int g = 0; g < G; ++g) {
      const int hq = h * G + g;
      for (int t = 0; t < Tq; ++t) {
        const int64_t row = (static_cast<int64_t>(hq) * Tq + t) * D;
        const float* qr = p.q_rot + row;
        double mx = kNegInf;
        for (int j = 0; j < n; ++j) {
          const bool dense = j >= Tk;
          const int pos = dense ? (p.d_pos ? p.d_pos[j - Tk] : j) : (p.k_pos ? p.k_pos[j] : j);
          if (p.q_pos && pos > p.q_pos[t]) {
            logit[j] = kNegInf;
            continue;
          }
          double dot = 0.0;
          if (!dense) {
            for (int i = 0; i < D; ++i) dot += static_cast<double>(qr[i]) * zk[static_cast<size_t>(j) * D + i];
            if (qjl) {
              const int de = std::min(p.k_plan.d_eff[h], 32 * p.sign_words);
              const uint32_t* sg = p.k_signs + (static_cast<int64_t>(j) * Hkv + h) * p.sign_words;
              double corr = 0.0;
              for (int m = 0; m < de; ++m) corr += ((sg[m >> 5] >> (m & 31)) & 1u) ? p.q_sketch[row + m] : -p.q_sketch[row + m];
              const double rn = HalfBitsToFloat(p.k_rnorm[static_cast<int64_t>(j) * Hkv + h]);
              dot += kSqrtHalfPi / p.k_plan.d_eff[h] * rn * corr;
            }
          } else {
            const int64_t base = static_cast<int64_t>(j - Tk) * ds + static_cast<int64_t>(h) * D;
            for (int i = 0; i < D; ++i)
              dot += static_cast<double>(p.q_raw[row + i]) * LoadAsFloat(p.dense_k, base + i, p.dense_dtype);
          }
          logit[j] = dot * p.scale;
          mx = std::max(mx, logit[j]);
        }
        std::fill(acc_e.begin(), acc_e.end(), 0.0);
        std::fill(acc_d.begin(), acc_d.end(), 0.0);
        double l = 0.0;
        if (mx != kNegInf) {
          for (int j = 0; j < n; ++j) {
            if (logit[j] == kNegInf) continue;
            const double w = std::exp(logit[j] - mx);
            l += w;
            if (j < Tk) {
              for (int i = 0; i < D; ++i) acc_e[i] += w * zv[static_cast<size_t>(j) * D + i];
            } else {
              const int64_t base = static_cast<int64_t>(j - Tk) * ds + static_cast<int64_t>(h) * D;
              for (int i = 0; i < D; ++i) acc_d[i] += w * LoadAsFloat(p.dense_v, base + i, p.dense_dtype);
            }
          }
        }
        const double inv = l > 0.0 ? 1.0 / l : 0.0;
        for (int i = 0; i < D; ++i) {
          p.a_eig[row + i] = static_cast<float>(acc_e[i] * inv);
          if (p.a_dense) p.a_dense[row + i] = static_cast<float>(acc_d[i] * inv);
        }
      }
    }
  }
  return true;
}

}  // namespace kvstream
