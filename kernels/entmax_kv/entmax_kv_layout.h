// EntmaxKV (design/strategies/entmax_kv.md): the paged views, stats pools and
// selection lists shared by every kernel of kernels/entmax_kv/ (K1-K7 of §7).
//
// Legend (dimension letters used in every shape below)
//   B    sequences of one launch (one layer);  b  one of them
//   H    query heads;  Hkv  KV heads;  G = H / Hkv query heads per KV head
//   Hs   selection heads: Hkv (SHARED_KV: one page list per KV head, shared by
//        its G query heads) or H (PER_QUERY_HEAD); query head h reads list
//        h / (H / Hs)
//   D    head dim (64 or 128, compile-time in the kernels)
//   P    page size in tokens (the unit of statistics and selection)
//   Pb   pool block size in tokens (the block table's unit; Pb = P unless
//        block_size says otherwise);  NB  blocks in the pool
//   SB   stats slots per block: Pb / P when P < Pb, else 1
//   MB   max pages per sequence (row length of the U / mu / sigma rows and
//        of the page lists); a block_table row holds MB*P/Pb blocks
//   MT   max selected tokens per head (row length of the score scratch), >= the
//        largest sel_len of the step (MB*P always suffices)
//   S    splits of the sparse decode (split-K)
//
// Per-sequence quantities (entmax_kv.md §4 notation), from the live length
// T = seq_lens[b] read on the DEVICE (tokens cached after appending the
// current one; clamped to MB*P):
//   N = ceil(T/P) pages; tail t = N-1 (always attended, never scored);
//   P_hist = t historical pages (0 when T <= P); tail_len = T - t*P.
//
// Layouts (one layer; the KV pool is the dense pool of kernels/dense)
//   K pool, V pool   [NB, Hkv, Pb, D] dtype (post-RoPE keys)
//   block_table      [B, MB*P/Pb] int32 physical block ids; token t of b is
//                    slot t % Pb of block block_table[b*(MB*P/Pb) + t / Pb]
//                    (EntmaxTokenOffset)
//   seq_lens         [B] int32, DEVICE memory for launchers (host for twins)
//   stats pools      [NB*SB, Hkv, D], indexed by the physical block holding
//                    the page's first token (times SB, plus the page's index
//                    in that block: EntmaxStatsSlot), so they follow the
//                    block table for free. With P = Pb: the block id.
//                      kmin, kmax   dtype (exact copies of key values, §3)
//                      kmean, kstd  fp32 (population std, floor 1e-6, §3/§6)
//   q                [B, H, D] dtype, strides q_stride_b / q_stride_h
//   page lists       pages [B, Hs, MB] int32 LOGICAL page indices, ascending;
//                    the tail t is always the last entry; page_count [B, Hs]
//                    entries used; sel_len [B, Hs] tokens T_sel attended
//                    (every listed page but the tail is full).
//
// Decisions (entmax_kv.md §6 and shared README decisions)
//   * Ties between pages go to the lower page index (top-k and the Gaussian cap).
//   * A NaN score ranks as -inf (never preferred, still selectable).
//   * T == 0: empty lists (page_count = sel_len = 0); the decode writes zeros.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/host_device.h"
#include "kernels/common/kv_dtype.h"

namespace kvstream {

inline constexpr int kEntmaxMaxSplits = 128;     // S upper bound
inline constexpr int kEntmaxSplitAlign = 16;     // split boundaries (tokens): multiples of this
inline constexpr int kEntmaxMaxNiter = 16;       // exact-tau passes (§5 niter 1-16)
inline constexpr int kEntmaxMaxCorrectionIters = 8;  // CORRECTED steps (§5 0-8)
inline constexpr int kEntmaxHistBins = 16;       // §4.4 histogram of z over [m-1, m]

// Which statistics pair a request keeps (§3: keep only the pair its selector needs).
enum class EntmaxStatKind : uint8_t {
  kMinMax = 0,   // top-k selector: kmin, kmax (dtype)
  kMeanStd = 1,  // Gaussian selector: kmean, kstd (fp32)
};

// How K7 finalises tau for alpha > 1 (§4.4; §5 tau_mode).
enum class EntmaxTauMode : uint8_t {
  kExact = 0,      // histogram start, bracket [m-1, m - T_sel^(1-alpha)], niter passes
  kFixed = 1,      // tau = tau_init (the clamped tau-hat of K6), no refinement
  kCorrected = 2,  // tau_init clamped to [m-1, m], then bracketed hybrid steps (§6)
};

// ---- paged KV view of one layer (K1, K2, K4, K7) -----------------------------
struct EntmaxPagedKv {
  const void* k_pool = nullptr;          // [NB, Hkv, P, D] dtype
  const void* v_pool = nullptr;          // [NB, Hkv, P, D] dtype (K7 only)
  const int32_t* block_table = nullptr;  // [B, MB] physical page ids in [0, NB)
  const int32_t* seq_lens = nullptr;     // [B] live lengths T (device for launchers)
  int batch = 0;                         // B (0 = nothing to do)
  int num_kv_heads = 0;                  // Hkv
  int head_dim = 0;                      // D: 64 or 128
  int page_size = 0;                     // P: 8, 16, 32 or 64 (§5)
  int block_size = 0;                    // Pb: 8, 16, 32 or 64; 0 = P (the pool's blocks are pages)
  int num_blocks = 0;                    // NB (bounds-checked by the twins only)
  int max_blocks_per_seq = 0;            // MB pages; MB*P must be a multiple of Pb
  KvDType dtype = KvDType::kBf16;        // K/V pool, q, out and kmin/kmax element type
};

// ---- per-page key statistics (K1 writes; K2 / K4 read) -----------------------
// Only the pair of the request's EntmaxStatKind needs to be non-null.
struct EntmaxStatsPools {
  void* kmin = nullptr;    // [NB, Hkv, D] dtype
  void* kmax = nullptr;    // [NB, Hkv, D] dtype
  float* kmean = nullptr;  // [NB, Hkv, D] fp32
  float* kstd = nullptr;   // [NB, Hkv, D] fp32
};

// ---- query rows ---------------------------------------------------------------
struct EntmaxQuery {
  const void* q = nullptr;  // [B, H, D] dtype, element (b,h,d) at b*stride_b + h*stride_h + d
  int64_t stride_b = 0;     // elements; 0 = H*D
  int64_t stride_h = 0;     // elements; 0 = D
  int num_heads = 0;        // H, a multiple of Hkv
};

// ---- page lists (K3 / K6 write; K7 reads) ----------------------------------------
struct EntmaxSelection {
  int32_t* pages = nullptr;       // [B, Hs, MB] logical page ids, ascending, tail last
  int32_t* page_count = nullptr;  // [B, Hs] entries of pages used
  int32_t* sel_len = nullptr;     // [B, Hs] tokens attended T_sel
  int select_heads = 0;           // Hs: Hkv (SHARED_KV) or H (PER_QUERY_HEAD)
};

// ---- per-sequence page arithmetic (kernels and twins share it) ---------------------
struct EntmaxSeqPages {
  int tokens = 0;     // T (clamped to [0, MB*P])
  int pages = 0;      // N
  int hist = 0;       // P_hist = N - 1 (0 if N == 0)
  int tail_len = 0;   // tokens of the tail page (0 if T == 0)
};

KV_HD EntmaxSeqPages EntmaxPagesOf(int32_t seq_len, int page_size, int max_blocks_per_seq) {
  EntmaxSeqPages s;
  const int cap = page_size * max_blocks_per_seq;
  s.tokens = seq_len < 0 ? 0 : (seq_len > cap ? cap : seq_len);
  s.pages = (s.tokens + page_size - 1) / page_size;
  s.hist = s.pages > 0 ? s.pages - 1 : 0;
  s.tail_len = s.tokens - s.hist * page_size;
  return s;
}

// ---- pool addressing (every kernel and twin goes through these) --------------------
// A request's page size need not be the pool's block size (the engine's pool
// has 16-token blocks for every strategy; §5 allows P in 8..64): a page of
// P < Pb is a slice of one block, a page of P > Pb spans P/Pb blocks.
KV_HD int EntmaxBlockTokens(const EntmaxPagedKv& kv) { return kv.block_size > 0 ? kv.block_size : kv.page_size; }
// Stats slots per block (SB): Pb / P for pages smaller than a block, else 1.
KV_HD int EntmaxStatsSlotsPerBlock(int page_size, int block_size) {
  return block_size > page_size ? block_size / page_size : 1;
}
// Blocks a table row needs for `tokens`, rounded up to whole pages (a page of
// P > Pb spans P / Pb blocks).
KV_HD int64_t EntmaxTableBlocksFor(int64_t tokens, int page_size, int block_size) {
  const int64_t per_page = page_size > block_size ? page_size / block_size : 1;
  return ((tokens + block_size - 1) / block_size + per_page - 1) / per_page * per_page;
}
// Block of page p of sequence b when pages are blocks (P == Pb): the table
// is indexed by page, no token arithmetic (the default; K2 and K1's fast path).
KV_HD int32_t EntmaxPageBlock(const EntmaxPagedKv& kv, int b, int p) {
  return kv.block_table[static_cast<int64_t>(b) * kv.max_blocks_per_seq + p];
}
// log2 of a power of two (P, Pb): shifts, not divisions, on the address path.
KV_HD int EntmaxLog2(int pow2) {
#ifdef __CUDA_ARCH__
  return __ffs(pow2) - 1;
#else
  return __builtin_ctz(static_cast<unsigned>(pow2));
#endif
}
// Row length of block_table, in blocks (32-bit arithmetic: MB*P tokens fit an int).
KV_HD int EntmaxTableRow(const EntmaxPagedKv& kv) {
  const int pshift = EntmaxLog2(kv.page_size), bshift = EntmaxLog2(EntmaxBlockTokens(kv));
  return bshift >= pshift ? kv.max_blocks_per_seq >> (bshift - pshift) : kv.max_blocks_per_seq << (pshift - bshift);
}
// Physical block holding logical token t of sequence b (t < MB*P).
KV_HD int32_t EntmaxBlockOf(const EntmaxPagedKv& kv, int b, int t) {
  return kv.block_table[static_cast<int64_t>(b) * EntmaxTableRow(kv) + (t >> EntmaxLog2(EntmaxBlockTokens(kv)))];
}
// Element offset of (token t, KV head g, dim 0) of sequence b in a K/V pool;
// tokens of one block are consecutive rows of D.
KV_HD int64_t EntmaxTokenOffset(const EntmaxPagedKv& kv, int b, int g, int t) {
  const int pb = EntmaxBlockTokens(kv);
  return ((static_cast<int64_t>(EntmaxBlockOf(kv, b, t)) * kv.num_kv_heads + g) * pb + (t & (pb - 1))) * kv.head_dim;
}
// Stats slot of page p of sequence b: its first token's block, times SB, plus
// the page's index within that block (a page of P >= Pb owns its first block's
// slot; the slots of its other blocks stay unused). Pages that are blocks (the
// common case) read the table and nothing else: K2's stats loads wait on it.
KV_HD int64_t EntmaxStatsSlot(const EntmaxPagedKv& kv, int b, int p) {
  const int pb = EntmaxBlockTokens(kv), P = kv.page_size;
  if (pb == P) return EntmaxPageBlock(kv, b, p);
  const int t0 = p * P;
  const int64_t blk = EntmaxBlockOf(kv, b, t0);
  return pb > P ? blk * EntmaxStatsSlotsPerBlock(P, pb) + ((t0 & (pb - 1)) >> EntmaxLog2(P)) : blk;
}

// True when every block holding tokens [pg*P, pg*P + n) of sequence b is an
// id in [0, NB) (the twins check before they write anything).
KV_HD bool EntmaxPageBlocksValid(const EntmaxPagedKv& kv, int b, int pg, int n) {
  const int pb = EntmaxBlockTokens(kv), t0 = pg * kv.page_size;
  for (int t = t0 - t0 % pb; t < t0 + n; t += pb) {
    const int32_t id = EntmaxBlockOf(kv, b, t);
    if (id < 0 || id >= kv.num_blocks) return false;
  }
  return true;
}

// Orderable bits of a float: a < b  <=>  EntmaxOrderedBits(a) < EntmaxOrderedBits(b);
// NaN maps like -inf (module decision above).
KV_HD uint32_t EntmaxOrderedBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) u = 0xff800000u;  // NaN -> -inf
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Ranking key of page p with score u: SMALLER key = preferred (higher score,
// ties to the lower page index). Unique per page, as radix selection needs.
KV_HD uint64_t EntmaxPageRankKey(float u, int p) {
  return (static_cast<uint64_t>(~EntmaxOrderedBits(u)) << 32) | static_cast<uint32_t>(p);
}

// Tokens [*begin, *end) of split `split` of a head's T_sel selected tokens:
// chunk = ceil(T_sel/S) rounded up to kEntmaxSplitAlign; trailing splits may be
// empty. Same function in kernel and twin.
KV_HD void EntmaxSplitRange(int t_sel, int num_splits, int split, int* begin, int* end) {
  int chunk = (t_sel + num_splits - 1) / num_splits;
  chunk = (chunk + kEntmaxSplitAlign - 1) / kEntmaxSplitAlign * kEntmaxSplitAlign;
  if (chunk == 0) chunk = kEntmaxSplitAlign;
  const long long b = static_cast<long long>(split) * chunk;
  *begin = b < t_sel ? static_cast<int>(b) : t_sel;
  *end = (t_sel - *begin) < chunk ? t_sel : *begin + chunk;
}

// nullptr if the view is valid; else a static message naming the bad field.
const char* EntmaxPagedKvValidate(const EntmaxPagedKv& kv);
// True for the (head_dim, dtype) pairs the kernels are built for: D in {64, 128},
// dtype in {fp32, bf16} (kvstream has no fp16 EntmaxKV path, §9.7).
bool EntmaxKvSupports(int head_dim, KvDType dtype);

}  // namespace kvstream
