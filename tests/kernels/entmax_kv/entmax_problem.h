// Random paged-KV problems for the EntmaxKV kernel tests (CPU twins and CUDA):
// a pool whose page ids are shuffled (so block_table indirection is exercised),
// q, and the page/selection buffers, all on the host. Values are stored in the
// pool's dtype; `kf`/`vf`/`qf` keep the same values as floats for oracles.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/entmax_kv/entmax_kv.h"

namespace kvstream::testing {

struct EntmaxShape {
  int batch = 1;
  int heads = 8;       // H
  int kv_heads = 2;    // Hkv
  int head_dim = 64;   // D
  int page_size = 16;  // P
  int block_size = 0;  // Pb, the pool's block (0 = P)
  std::vector<int> seq_lens = {100};
  KvDType dtype = KvDType::kFp32;
  float key_scale = 1.0f;  // std of the random keys
};

struct EntmaxProblem {
  EntmaxShape shape;
  int max_blocks = 0;  // MB pages (of P tokens)
  int num_blocks = 0;  // NB pool blocks (of Pb tokens)
  std::vector<uint8_t> k_pool, v_pool, q;  // dtype bytes
  std::vector<int32_t> block_table, seq_lens;  // [B, MB*P/Pb] blocks, [B]
  std::vector<uint8_t> kmin, kmax;         // [NB*SB, Hkv, D] dtype
  std::vector<float> kmean, kstd;          // [NB*SB, Hkv, D]

  int Pb() const { return shape.block_size > 0 ? shape.block_size : shape.page_size; }
  int TableRow() const { return max_blocks * shape.page_size / Pb(); }
  // Element index of (b, g, t, d) in a pool: the layout of entmax_kv_layout.h
  // written out here, independent of the kernels' helpers.
  size_t PoolIndex(int b, int g, int t, int d) const {
    const int64_t blk = block_table[static_cast<size_t>(b) * TableRow() + t / Pb()];
    return static_cast<size_t>(((blk * shape.kv_heads + g) * Pb() + t % Pb()) * shape.head_dim + d);
  }

  size_t Esz() const { return KvDTypeSize(shape.dtype); }
  // Key / value / query of (b, kv head or head, token t, dim d) as float.
  float K(int b, int g, int t, int d) const { return Pool(k_pool, b, g, t, d); }
  float V(int b, int g, int t, int d) const { return Pool(v_pool, b, g, t, d); }
  float Q(int b, int h, int d) const {
    return LoadAsFloat(q.data(), (static_cast<size_t>(b) * shape.heads + h) * shape.head_dim + d, shape.dtype);
  }
  float Pool(const std::vector<uint8_t>& pool, int b, int g, int t, int d) const {
    return LoadAsFloat(pool.data(), PoolIndex(b, g, t, d), shape.dtype);
  }
  void SetK(int b, int g, int t, int d, float v) {
    StoreFromFloat(k_pool.data(), PoolIndex(b, g, t, d), v, shape.dtype);
  }
  void SetV(int b, int g, int t, int d, float v) {
    StoreFromFloat(v_pool.data(), PoolIndex(b, g, t, d), v, shape.dtype);
  }

  EntmaxPagedKv Kv() {
    EntmaxPagedKv kv;
    kv.k_pool = k_pool.data();
    kv.v_pool = v_pool.data();
    kv.block_table = block_table.data();
    kv.seq_lens = seq_lens.data();
    kv.batch = shape.batch;
    kv.num_kv_heads = shape.kv_heads;
    kv.head_dim = shape.head_dim;
    kv.page_size = shape.page_size;
    kv.block_size = shape.block_size;
    kv.num_blocks = num_blocks;
    kv.max_blocks_per_seq = max_blocks;
    kv.dtype = shape.dtype;
    return kv;
  }
  EntmaxQuery Query() {
    EntmaxQuery qq;
    qq.q = q.data();
    qq.num_heads = shape.heads;
    return qq;
  }
  EntmaxStatsPools Stats() {
    EntmaxStatsPools s;
    s.kmin = kmin.data();
    s.kmax = kmax.data();
    s.kmean = kmean.data();
    s.kstd = kstd.data();
    return s;
  }
};

// Fills everything with N(0, key_scale) keys and N(0,1) values/queries; MB is
// the largest sequence's page count + 1 (a spare slot stays unused; rounded up
// to whole blocks when P < Pb); blocks are a random permutation of the pool,
// plus 3 spare blocks never referenced.
inline EntmaxProblem MakeEntmaxProblem(const EntmaxShape& sh, uint32_t seed) {
  EntmaxProblem pr;
  pr.shape = sh;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int P = sh.page_size, D = sh.head_dim;
  int maxp = 1;
  for (int t : sh.seq_lens) maxp = std::max(maxp, (t + P - 1) / P);
  const int per_block = EntmaxStatsSlotsPerBlock(P, pr.Pb());  // SB: pages (and stats slots) per block
  pr.max_blocks = (maxp + 1 + per_block - 1) / per_block * per_block;
  pr.num_blocks = sh.batch * pr.TableRow() + 3;
  std::vector<int32_t> perm(pr.num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  pr.block_table.assign(static_cast<size_t>(sh.batch) * pr.TableRow(), 0);
  for (size_t i = 0; i < pr.block_table.size(); ++i) pr.block_table[i] = perm[i];
  pr.seq_lens.assign(sh.seq_lens.begin(), sh.seq_lens.end());
  const size_t pool_elems = static_cast<size_t>(pr.num_blocks) * sh.kv_heads * pr.Pb() * D;
  pr.k_pool.assign(pool_elems * pr.Esz(), 0);
  pr.v_pool.assign(pool_elems * pr.Esz(), 0);
  for (size_t i = 0; i < pool_elems; ++i) {
    StoreFromFloat(pr.k_pool.data(), i, sh.key_scale * nd(rng), sh.dtype);
    StoreFromFloat(pr.v_pool.data(), i, nd(rng), sh.dtype);
  }
  const size_t qn = static_cast<size_t>(sh.batch) * sh.heads * D;
  pr.q.assign(qn * pr.Esz(), 0);
  for (size_t i = 0; i < qn; ++i) StoreFromFloat(pr.q.data(), i, nd(rng), sh.dtype);
  const size_t sn = static_cast<size_t>(pr.num_blocks) * per_block * sh.kv_heads * D;  // SB slots per block
  pr.kmin.assign(sn * pr.Esz(), 0);
  pr.kmax.assign(sn * pr.Esz(), 0);
  pr.kmean.assign(sn, 0.0f);
  pr.kstd.assign(sn, 0.0f);
  return pr;
}

// Runs K1 over every page of every sequence (the bulk pass after prefill).
inline bool FillStats(EntmaxProblem* pr, EntmaxStatKind kind) {
  EntmaxPageStatsParams p;
  p.kv = pr->Kv();
  p.stats = pr->Stats();
  p.kind = kind;
  p.recent_pages = pr->max_blocks;
  return EntmaxPageStatsRef(p);
}

// Buffers of one selection (K3/K6 output) on the host.
struct SelectionBuffers {
  std::vector<int32_t> pages, count, sel_len;
  int hs = 0, mb = 0;
  SelectionBuffers(int batch, int hs_, int mb_) : hs(hs_), mb(mb_) {
    pages.assign(static_cast<size_t>(batch) * hs * mb, -7);
    count.assign(static_cast<size_t>(batch) * hs, -7);
    sel_len.assign(static_cast<size_t>(batch) * hs, -7);
  }
  EntmaxSelection View() {
    EntmaxSelection s;
    s.pages = pages.data();
    s.page_count = count.data();
    s.sel_len = sel_len.data();
    s.select_heads = hs;
    return s;
  }
  std::vector<int> List(int b, int l) const {
    const size_t row = static_cast<size_t>(b) * hs + l;
    return std::vector<int>(pages.begin() + row * mb, pages.begin() + row * mb + count[row]);
  }
};

}  // namespace kvstream::testing
