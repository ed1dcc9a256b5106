// Block-wide exact selection on 32-bit keys in shared memory (K3). RadixSelect
// (entmax_topk_chunked.cu, and RangedSelect's fallback for heavy ties): the
// kk-th smallest key of keys[0, n) in 3 passes
// (11/11/10 bits, 2048-bin shared histogram), then an ordered emit of every
// key < thr plus the first kk' keys == thr in ARRAY order. With the keys laid
// out in page order this is the twin's stable sort on (key, page): ties go to
// the lower page. Generic over the CTA size (kThreads a multiple of 32, <= 1024,
// dividing 2048); every thread of the CTA must call each function.
// RangedSelect (the one-CTA kernel of entmax_topk.cu): below.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

namespace kvstream::entmax_detail {

constexpr int kRadixBins = 2048;
constexpr uint32_t kNoKey = 0xffffffffu;  // above every real key (~EntmaxOrderedBits <= 0xff800000)

template <int kThreads>
struct RadixSelectSmem {
  static constexpr int kWarps = kThreads / 32;
  uint32_t hist[kRadixBins];
  uint32_t wsum[kWarps];
  uint32_t sel_bin, sel_before, sel_count;
  int w_lt[kWarps], w_eq[kWarps];
};

// hist[bin] += 1 for every lane with bin != kNoKey. Early passes see one or two
// crowded bins (equal sign and exponent): two rounds of "lanes sharing the
// first pending lane's bin add once" take those, the rest add alone
// (__match_any_sync measured slower on the H100: low throughput).
__device__ __forceinline__ void RadixHistAdd(uint32_t* hist, uint32_t bin, int lane) {
  unsigned todo = __ballot_sync(0xffffffffu, bin != kNoKey);
#pragma unroll
  for (int round = 0; round < 2; ++round) {
    if (todo == 0) return;
    const int src = __ffs(todo) - 1;
    const uint32_t lead = __shfl_sync(0xffffffffu, bin, src);
    const unsigned same = __ballot_sync(0xffffffffu, bin == lead) & todo;
    if (lane == src) atomicAdd(&hist[lead], static_cast<uint32_t>(__popc(same)));
    todo &= ~same;
  }
  if (todo & (1u << lane)) atomicAdd(&hist[bin], 1u);
}

// The bin holding the kk-th key (1-based, kk <= keys counted): thread t owns
// bins [t*kPer, (t+1)*kPer); writes sel_bin, sel_before (keys in earlier
// bins) and sel_count (keys in that bin); ends with a barrier.
template <int kThreads>
__device__ __forceinline__ void RadixFindBin(RadixSelectSmem<kThreads>& sm, int kk) {
  constexpr int kPer = kRadixBins / kThreads, kWarps = kThreads / 32;
  static_assert(kRadixBins % kThreads == 0 && kThreads % 32 == 0, "bins split evenly over whole warps");
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint32_t c[kPer], tot = 0;
#pragma unroll
  for (int j = 0; j < kPer; ++j) c[j] = sm.hist[tid * kPer + j], tot += c[j];
  uint32_t inc = tot;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const uint32_t v = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += v;
  }
  if (lane == 31) sm.wsum[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    const uint32_t w = lane < kWarps ? sm.wsum[lane] : 0u;
    uint32_t wi = w;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const uint32_t v = __shfl_up_sync(0xffffffffu, wi, o);
      if (lane >= o) wi += v;
    }
    if (lane < kWarps) sm.wsum[lane] = wi - w;  // exclusive prefix of the warps
  }
  __syncthreads();
  const uint32_t k = static_cast<uint32_t>(kk);
  uint32_t run = sm.wsum[warp] + inc - tot;
  if (run < k && k <= run + tot) {  // exactly one thread
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      if (run < k && k <= run + c[j]) sm.sel_bin = tid * kPer + j, sm.sel_before = run, sm.sel_count = c[j];
      run += c[j];
    }
  }
  __syncthreads();
}

// The kk-th smallest of keys[0, n) (1 <= kk <= number of keys != kNoKey).
// Returns thr; *take_eq = how many keys == thr to take (the first ones in
// array order; INT_MAX when every key == thr is taken). Keys must be written
// before the call (its first barrier publishes them).
template <int kThreads>
__device__ __forceinline__ uint32_t RadixSelect(const uint32_t* keys, int n, int kk, RadixSelectSmem<kThreads>& sm, int* take_eq) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  uint32_t prefix = 0, mask = 0;
#pragma unroll 1
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0), bits = pass == 2 ? 10 : 11;
    const uint32_t dmask = (1u << bits) - 1;
    for (int i = tid; i < kRadixBins; i += kThreads) sm.hist[i] = 0;
    __syncthreads();  // also: keys written, the previous pass's sel_* read by everyone
    for (int base = warp * 32; base < n; base += kThreads) {
      const int i = base + lane;
      const uint32_t key = i < n ? keys[i] : kNoKey;
      const uint32_t bin = key != kNoKey && (key & mask) == prefix ? (key >> shift) & dmask : kNoKey;
      RadixHistAdd(sm.hist, bin, lane);
    }
    __syncthreads();
    RadixFindBin<kThreads>(sm, kk);
    const uint32_t bin = sm.sel_bin, before = sm.sel_before, cnt = sm.sel_count;
    prefix |= bin << shift;
    mask |= dmask << shift;
    kk -= static_cast<int>(before);
    if (static_cast<uint32_t>(kk) == cnt) {  // the whole bin is taken: no need to split it further
      *take_eq = INT_MAX;
      return prefix | ((1u << shift) - 1u);
    }
  }
  *take_eq = kk;
  return prefix;
}

// ---- Ranged selection (one pass instead of three on smooth scores) ----------
// The three radix passes above spend their first pass on sign and exponent
// (real U rows share both, so one or two bins take every key) and each pass
// is a chain of barriers. RangedSelect bins the candidates linearly over the
// row's own score range instead: the bin is monotone in the key, so the
// kk-th smallest key lies in the bin holding the kk-th count, and with 2048
// bins over [min, max] that bin holds a handful of keys. They are ranked
// exactly on (key, index) (the twin's stable order); a bin of more than
// kRangedMaxMembers keys (heavy ties) falls back to RadixSelect.
constexpr int kRangedMaxMembers = 256;

template <int kThreads>
struct RangedSelectSmem {
  RadixSelectSmem<kThreads> radix;
  uint32_t wmin[kThreads / 32], wmax[kThreads / 32];
  unsigned long long members[kRangedMaxMembers];  // (key << 32) | index, the threshold bin's keys
  uint32_t n_members, thr;
  int take_eq;
};

// The score a key was made from (inverse of ~EntmaxOrderedBits; NaN came in as -inf).
__device__ __forceinline__ float RankKeyScore(uint32_t key) {
  const uint32_t o = ~key;
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

// Bin of a candidate key, monotone non-decreasing in the key (smaller key =
// higher score: bin 0 holds the best). Linear in the score between the row's
// best and worst (umax - u is >= 0 and every step rounds monotonically); in
// key space when the scores are not finite (then bins are coarse but still
// ordered).
struct RangedBinner {
  uint32_t lo;       // smallest candidate key
  float umax, scale;
  bool by_score;
  __device__ __forceinline__ RangedBinner(uint32_t lo_key, uint32_t hi_key) : lo(lo_key) {
    umax = RankKeyScore(lo_key);
    const float span = umax - RankKeyScore(hi_key);
    by_score = span > 0.0f && span <= 3.0e38f;  // false for inf / NaN spans
    scale = by_score ? static_cast<float>(kRadixBins) / span
                     : static_cast<float>(kRadixBins) / (static_cast<float>(hi_key - lo_key) + 1.0f);
  }
  __device__ __forceinline__ uint32_t operator()(uint32_t key) const {
    const float x = by_score ? (umax - RankKeyScore(key)) * scale : static_cast<float>(key - lo) * scale;
    return min(static_cast<uint32_t>(x), static_cast<uint32_t>(kRadixBins - 1));
  }
};

// The same contract as RadixSelect for keys[0, n) where keys[0, first) are 0,
// below every candidate key (EntmaxKV's sinks), and are always taken:
// returns thr and *take_eq so that RadixEmit takes exactly the kk_total
// smallest keys under (key, index), first <= kk_total. Keys must be written
// before the call; lo / hi are this thread's min / max over the candidate
// keys it wrote (~0u / 0 if none), taken while loading them.
template <int kThreads>
__device__ __forceinline__ uint32_t RangedSelect(const uint32_t* keys, int n, int first, int kk_total,
                                                 RangedSelectSmem<kThreads>& sm, uint32_t lo, uint32_t hi,
                                                 int* take_eq) {
  constexpr int kWarps = kThreads / 32;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int kk = kk_total - first;  // candidates to take
  lo = __reduce_min_sync(0xffffffffu, lo), hi = __reduce_max_sync(0xffffffffu, hi);
  if (lane == 0) sm.wmin[warp] = lo, sm.wmax[warp] = hi;
  for (int i = tid; i < kRadixBins; i += kThreads) sm.radix.hist[i] = 0;
  if (tid == 0) sm.n_members = 0;
  __syncthreads();  // also: keys written
  lo = __reduce_min_sync(0xffffffffu, lane < kWarps ? sm.wmin[lane] : 0xffffffffu);
  hi = __reduce_max_sync(0xffffffffu, lane < kWarps ? sm.wmax[lane] : 0u);
  // (Uniform branches: every thread holds the same lo, hi, kk.)
  if (kk <= 0) { *take_eq = 0; return first > 0 ? 1u : 0u; }            // the leading zeros only
  if (kk >= n - first) { *take_eq = INT_MAX; return hi; }             // every key
  if (lo == hi) { *take_eq = kk; return lo; }                          // all candidates tie: the first kk
  // Plain shared atomics: ranged bins rarely collide within a warp (the
  // aggregation of RadixHistAdd is for the crowded exponent bins of pass 1).
  const RangedBinner bin_of(lo, hi);
  for (int i = first + tid; i < n; i += kThreads) atomicAdd(&sm.radix.hist[bin_of(keys[i])], 1u);
  __syncthreads();
  RadixFindBin<kThreads>(sm.radix, kk);  // ends with a barrier
  const uint32_t bin = sm.radix.sel_bin, cnt = sm.radix.sel_count;
  const int r = kk - static_cast<int>(sm.radix.sel_before);  // 1-based rank inside the bin
  if (cnt > kRangedMaxMembers) return RadixSelect<kThreads>(keys, n, kk_total, sm.radix, take_eq);
  for (int i = first + tid; i < n; i += kThreads) {
    const uint32_t k = keys[i];
    if (bin_of(k) == bin) {  // same arithmetic as the histogram pass: cnt members, guarded anyway
      const uint32_t slot = atomicAdd(&sm.n_members, 1u);
      if (slot < kRangedMaxMembers) {
        sm.members[slot] = (static_cast<unsigned long long>(k) << 32) | static_cast<uint32_t>(i);
      }
    }
  }
  __syncthreads();
  if (tid < static_cast<int>(cnt)) {  // members are distinct (unique indices): exactly one has rank r - 1
    const unsigned long long m = sm.members[tid];
    int below = 0, eq_below = 0;
    for (int j = 0; j < static_cast<int>(cnt); ++j) {
      const unsigned long long o = sm.members[j];
      below += o < m;
      eq_below += o < m && (o >> 32) == (m >> 32);
    }
    // Keys equal to thr all share its bin, so eq_below counts every such key before it.
    if (below == r - 1) sm.thr = static_cast<uint32_t>(m >> 32), sm.take_eq = eq_below + 1;
  }
  __syncthreads();
  *take_eq = sm.take_eq;
  return sm.thr;
}

// Writes out[pos] = page_of(i) for every taken i (key < thr, or == thr among
// the first take_eq such keys), pos ascending with i: warp w owns a
// contiguous slice of whole 32-key rows. Ends with a barrier.
template <int kThreads, class PageOf>
__device__ __forceinline__ void RadixEmit(const uint32_t* keys, int n, uint32_t thr, int take_eq, RadixSelectSmem<kThreads>& sm,
                          int32_t* out, PageOf page_of) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int w = ((n + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int lo = min(warp * w, n), hi = min(lo + w, n);
  int lt = 0, eq = 0;
  for (int base = lo; base < hi; base += 32) {
    const int i = base + lane;
    const uint32_t key = i < hi ? keys[i] : kNoKey;
    lt += __popc(__ballot_sync(0xffffffffu, key < thr));
    eq += __popc(__ballot_sync(0xffffffffu, key != kNoKey && key == thr));
  }
  if (lane == 0) sm.w_lt[warp] = lt, sm.w_eq[warp] = eq;
  __syncthreads();
  int lt_before = 0, eq_before = 0;
  for (int v = 0; v < warp; ++v) lt_before += sm.w_lt[v], eq_before += sm.w_eq[v];
  int pos = lt_before + min(eq_before, take_eq);
  const unsigned below = (1u << lane) - 1;
  for (int base = lo; base < hi; base += 32) {
    const int i = base + lane;
    const uint32_t key = i < hi ? keys[i] : kNoKey;
    const unsigned eqm = __ballot_sync(0xffffffffu, key != kNoKey && key == thr);
    const bool take = key < thr || (key != kNoKey && key == thr && eq_before + __popc(eqm & below) < take_eq);
    const unsigned tk = __ballot_sync(0xffffffffu, take);
    if (take) out[pos + __popc(tk & below)] = page_of(i);
    pos += __popc(tk);
    eq_before += __popc(eqm);
  }
  __syncthreads();
}

}  // namespace kvstream::entmax_detail
