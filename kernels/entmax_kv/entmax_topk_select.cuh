// Block-wide exact radix selection on 32-bit keys in shared memory (K3,
// entmax_topk_chunked.cu): the kk-th smallest key of keys[0, n) in 3 passes
// (11/11/10 bits, 2048-bin shared histogram), then an ordered emit of every
// key < thr plus the first kk' keys == thr in ARRAY order. With the keys laid
// out in page order this is the twin's stable sort on (key, page): ties go to
// the lower page. Generic over the CTA size (kThreads a multiple of 32, <= 1024,
// dividing 2048); every thread of the CTA must call each function.
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
