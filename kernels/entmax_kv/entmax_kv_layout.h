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
//   P    page size in tokens;  NB  pages in the pool
//   MB   max pages per sequence (row length of block_table, of the U / mu /
//        sigma rows and of the page lists)
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
//   K pool, V pool   [NB, Hkv, P, D] dtype (post-RoPE keys)
//   block_table      [B, MB] int32 physical page ids; logical page p of b is
//                    block_table[b*MB + p]
//   seq_lens         [B] int32, DEVICE memory for launchers (host for twins)
//   stats pools      [NB, Hkv, D], indexed by the PHYSICAL page id like the
//                    KV pool, so they follow the block table for free:
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
  int num_blocks = 0;                    // NB (bounds-checked by the twins only)
  int max_blocks_per_seq = 0;            // MB
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
