// Random paged-decode problems and a naive fp64 reference, shared by the CPU
// twin test and the CUDA test of kernels/dense/dense_decode.
//
// Every problem has shuffled, non-contiguous page ids, table entries past a
// sequence's pages set to -1, and every pool slot that holds no live token
// filled with NaN: reading any of them poisons the result.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/dense/dense_decode.h"

namespace kvstream::testing {

struct DecodeShape {
  int num_heads = 8;     // H
  int num_kv_heads = 2;  // Hkv
  int head_dim = 128;    // D
  int page_size = 16;    // P
  KvDType dtype = KvDType::kBf16;
  std::vector<int> lens;  // T per sequence; B = lens.size()
  int q_row_pad = 0;      // extra elements after each q row (a strided q when > 0)
};

struct DecodeProblem {
  DecodeShape shape;
  int batch = 0, num_blocks = 0, max_blocks_per_seq = 0, max_seq_len = 0;
  int64_t q_stride_b = 0;             // elements between q rows
  std::vector<uint8_t> q;             // [B, q_stride_b] dtype
  std::vector<uint8_t> k_pool, v_pool;  // [NB, Hkv, P, D] dtype
  std::vector<int32_t> block_table;   // [B, MB]
  std::vector<int32_t> seq_lens;      // [B]
  std::vector<uint8_t> k_new, v_new;  // fused append: [B, new_stride_b] dtype, or empty (see TakeNewestRows)
  int64_t new_stride_b = 0;

  size_t OutElems() const { return static_cast<size_t>(batch) * shape.num_heads * shape.head_dim; }
  size_t OutBytes() const { return OutElems() * KvDTypeSize(shape.dtype); }

  // Params over this problem's host buffers (the CUDA test swaps in device pointers).
  DenseDecodeParams Params(void* out, int num_splits = 1, float* partial_out = nullptr,
                           float* partial_lse = nullptr) const {
    DenseDecodeParams p;
    p.q = q.data();
    // The twin writes the pools only with k_new set (TakeNewestRows problems).
    p.k_pool = const_cast<uint8_t*>(k_pool.data());
    p.v_pool = const_cast<uint8_t*>(v_pool.data());
    if (!k_new.empty()) {
      p.k_new = k_new.data();
      p.v_new = v_new.data();
      p.new_stride_b = new_stride_b;
    }
    p.block_table = block_table.data();
    p.seq_lens = seq_lens.data();
    p.out = out;
    p.partial_out = partial_out;
    p.partial_lse = partial_lse;
    p.q_stride_b = q_stride_b;
    p.batch = batch;
    p.num_heads = shape.num_heads;
    p.num_kv_heads = shape.num_kv_heads;
    p.head_dim = shape.head_dim;
    p.page_size = shape.page_size;
    p.num_blocks = num_blocks;
    p.max_blocks_per_seq = max_blocks_per_seq;
    p.max_seq_len = max_seq_len;
    p.num_splits = num_splits;
    p.scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
    p.dtype = shape.dtype;
    return p;
  }
};

inline void FillBuffer(std::vector<uint8_t>& buf, size_t n, KvDType t, std::mt19937& rng, float lo,
                       float hi, bool normal) {
  buf.assign(n * KvDTypeSize(t), 0);
  std::uniform_real_distribution<float> uni(lo, hi);
  std::normal_distribution<float> nor(0.0f, hi);
  for (size_t i = 0; i < n; ++i) StoreFromFloat(buf.data(), i, normal ? nor(rng) : uni(rng), t);
}

// q ~ N(0, 2^2) and K ~ N(0, 1) give scaled scores of std ~2 (peaked softmax);
// V ~ U(-1, 1). Values are rounded to the storage type before anyone reads them.
inline DecodeProblem MakeDecodeProblem(const DecodeShape& s, uint32_t seed) {
  DecodeProblem pr;
  pr.shape = s;
  pr.batch = static_cast<int>(s.lens.size());
  std::mt19937 rng(seed);
  const int P = s.page_size, D = s.head_dim, Hkv = s.num_kv_heads;
  std::vector<int> pages(pr.batch);
  int total = 0, max_pages = 0;
  for (int b = 0; b < pr.batch; ++b) {
    pages[b] = (s.lens[b] + P - 1) / P;
    total += pages[b];
    max_pages = std::max(max_pages, pages[b]);
    pr.max_seq_len = std::max(pr.max_seq_len, s.lens[b]);
  }
  pr.num_blocks = total + 3;  // spare pages nobody owns
  pr.max_blocks_per_seq = max_pages + 1;
  std::vector<int32_t> ids(pr.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  pr.block_table.assign(static_cast<size_t>(pr.batch) * pr.max_blocks_per_seq, -1);
  pr.seq_lens.assign(s.lens.begin(), s.lens.end());
  const size_t pool_elems = static_cast<size_t>(pr.num_blocks) * Hkv * P * D;
  FillBuffer(pr.k_pool, pool_elems, s.dtype, rng, 0.0f, 1.0f, true);
  FillBuffer(pr.v_pool, pool_elems, s.dtype, rng, -1.0f, 1.0f, false);
  std::vector<bool> live(static_cast<size_t>(pr.num_blocks) * P, false);  // (page, slot) holds a token
  int next = 0;
  for (int b = 0; b < pr.batch; ++b) {
    for (int i = 0; i < pages[b]; ++i) {
      const int id = ids[next++];
      pr.block_table[static_cast<size_t>(b) * pr.max_blocks_per_seq + i] = id;
      for (int j = 0; j < P && i * P + j < s.lens[b]; ++j) live[static_cast<size_t>(id) * P + j] = true;
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int id = 0; id < pr.num_blocks; ++id) {
    for (int j = 0; j < P; ++j) {
      if (live[static_cast<size_t>(id) * P + j]) continue;
      for (int h = 0; h < Hkv; ++h) {
        const size_t off = ((static_cast<size_t>(id) * Hkv + h) * P + j) * D;
        for (int d = 0; d < D; ++d) {
          StoreFromFloat(pr.k_pool.data(), off + d, nan, s.dtype);
          StoreFromFloat(pr.v_pool.data(), off + d, nan, s.dtype);
        }
      }
    }
  }
  pr.q_stride_b = static_cast<int64_t>(s.num_heads) * D + s.q_row_pad;
  FillBuffer(pr.q, static_cast<size_t>(pr.batch) * pr.q_stride_b, s.dtype, rng, 0.0f, 2.0f, true);
  return pr;
}

// Fills n elements of a dtype buffer with NaN.
inline void PoisonNaN(void* buf, size_t n, KvDType t) {
  for (size_t i = 0; i < n; ++i) StoreFromFloat(buf, i, std::numeric_limits<float>::quiet_NaN(), t);
}

// Fused-append form of a problem: each sequence's newest token (T-1, T >= 1)
// moves out of the pools into k_new/v_new ([B, Hkv*D + row_pad] rows, the
// padding NaN) and its pool slots become NaN, so only an attention that takes
// that row from k_new (and stores it back) reproduces the original output.
inline DecodeProblem TakeNewestRows(const DecodeProblem& pr, int row_pad = 0) {
  DecodeProblem f = pr;
  const DecodeShape& s = pr.shape;
  const int D = s.head_dim, P = s.page_size, Hkv = s.num_kv_heads;
  const size_t elt = KvDTypeSize(s.dtype);
  f.new_stride_b = static_cast<int64_t>(Hkv) * D + row_pad;
  f.k_new.assign(static_cast<size_t>(pr.batch) * f.new_stride_b * elt, 0);
  PoisonNaN(f.k_new.data(), f.k_new.size() / elt, s.dtype);
  f.v_new = f.k_new;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int b = 0; b < pr.batch; ++b) {
    const int t = pr.seq_lens[b] - 1;
    if (t < 0) continue;
    const int id = pr.block_table[static_cast<size_t>(b) * pr.max_blocks_per_seq + t / P];
    for (int h = 0; h < Hkv; ++h) {
      const size_t src = ((static_cast<size_t>(id) * Hkv + h) * P + t % P) * D;
      const size_t dst = static_cast<size_t>(b) * f.new_stride_b + static_cast<size_t>(h) * D;
      for (int d = 0; d < D; ++d) {
        StoreFromFloat(f.k_new.data(), dst + d, LoadAsFloat(pr.k_pool.data(), src + d, s.dtype), s.dtype);
        StoreFromFloat(f.v_new.data(), dst + d, LoadAsFloat(pr.v_pool.data(), src + d, s.dtype), s.dtype);
        StoreFromFloat(f.k_pool.data(), src + d, nan, s.dtype);
        StoreFromFloat(f.v_pool.data(), src + d, nan, s.dtype);
      }
    }
  }
  return f;
}

// Naive fp64 attention over a gathered contiguous copy of each sequence's K/V.
// Returns [B, H, D]; zeros for a sequence of length 0.
inline std::vector<double> NaiveAttentionFp64(const DecodeProblem& pr) {
  const DecodeShape& s = pr.shape;
  const int D = s.head_dim, P = s.page_size, G = s.num_heads / s.num_kv_heads;
  std::vector<double> out(pr.OutElems(), 0.0);
  for (int b = 0; b < pr.batch; ++b) {
    const int T = pr.seq_lens[b];
    for (int kvh = 0; kvh < s.num_kv_heads; ++kvh) {
      std::vector<double> k(static_cast<size_t>(T) * D), v(static_cast<size_t>(T) * D);
      for (int t = 0; t < T; ++t) {
        const int id = pr.block_table[static_cast<size_t>(b) * pr.max_blocks_per_seq + t / P];
        const size_t off = ((static_cast<size_t>(id) * s.num_kv_heads + kvh) * P + t % P) * D;
        for (int d = 0; d < D; ++d) {
          k[static_cast<size_t>(t) * D + d] = LoadAsFloat(pr.k_pool.data(), off + d, s.dtype);
          v[static_cast<size_t>(t) * D + d] = LoadAsFloat(pr.v_pool.data(), off + d, s.dtype);
        }
      }
      for (int h = kvh * G; h < (kvh + 1) * G; ++h) {
        if (T == 0) continue;
        const size_t qoff = static_cast<size_t>(b) * pr.q_stride_b + static_cast<size_t>(h) * D;
        std::vector<double> sc(T), qv(D);
        for (int d = 0; d < D; ++d) qv[d] = LoadAsFloat(pr.q.data(), qoff + d, s.dtype);
        double mx = -std::numeric_limits<double>::infinity();
        for (int t = 0; t < T; ++t) {
          double dot = 0.0;
          for (int d = 0; d < D; ++d) dot += qv[d] * k[static_cast<size_t>(t) * D + d];
          sc[t] = dot / std::sqrt(static_cast<double>(D));
          mx = std::max(mx, sc[t]);
        }
        double l = 0.0;
        for (int t = 0; t < T; ++t) l += (sc[t] = std::exp(sc[t] - mx));
        double* o = &out[(static_cast<size_t>(b) * s.num_heads + h) * D];
        for (int t = 0; t < T; ++t)
          for (int d = 0; d < D; ++d) o[d] += sc[t] / l * v[static_cast<size_t>(t) * D + d];
      }
    }
  }
  return out;
}

// Decodes n elements of a dtype buffer to double.
inline std::vector<double> ToDouble(const void* buf, size_t n, KvDType t) {
  std::vector<double> r(n);
  for (size_t i = 0; i < n; ++i) r[i] = LoadAsFloat(buf, i, t);
  return r;
}


inline bool AllFinite(const std::vector<double>& x) {
  return std::all_of(x.begin(), x.end(), [](double v) { return std::isfinite(v); });
}

// ||got - ref|| / ||ref|| (infinity if any element of got is not finite).
inline double RelError(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Output error bound of the twin vs fp64 for each storage type: dominated by
// rounding out to the storage type (bf16 2^-9, fp16 2^-12 relative per element).
inline double TwinBound(KvDType t) {
  switch (t) {
    case KvDType::kFp32: return 1e-5;
    case KvDType::kFp16: return 1e-3;
    default: return 6e-3;
  }
}

}  // namespace kvstream::testing
