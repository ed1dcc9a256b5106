// akv_select (akv.md §4 steps 4-6; rules in akv_manage.h): one CTA per layer.
// Instead of sorting, each "k smallest keys" set is found by an MSB-first
// radix selection of the k-th smallest 64-bit key (AkvKey* of akv_layout.h,
// unique per row) followed by an ordered emit of every eligible row whose key
// is <= it: the same set std::stable_sort picks in the twin, emitted sorted
// by slot index, in O(passes * n / threads) with a few KiB of shared memory
// for any tier size.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "kernels/akv/akv_device.cuh"
#include "kernels/akv/akv_manage.h"
#include "kernels/cuda_check.h"

namespace kvstream {
namespace akv_detail {
namespace {

constexpr int kSelectThreads = 512;
constexpr uint64_t kAllKeys = ~0ull;

__device__ __forceinline__ bool InSorted(const int32_t* a, int n, int x) {
  const int i = CountLess(a, n, x);
  return i < n && a[i] == x;
}

__global__ void __launch_bounds__(kSelectThreads) SelectKernel(const AkvSelectParams p) {
  __shared__ SelectScratch ss;
  __shared__ EmitScratch es;
  const int l = blockIdx.x;
  const AkvLayout& lay = p.layout;
  const AkvPolicy& pol = p.policy;
  const AkvTiers t = AkvTiersAtLayer(p.tiers, lay, l);
  int32_t* cnt = t.counts;
  int32_t* demote = p.lists.demote + static_cast<int64_t>(l) * lay.hot_capacity;
  int32_t* promote = p.lists.promote + static_cast<int64_t>(l) * lay.warm_capacity;
  int32_t* cold = p.lists.cold + static_cast<int64_t>(l) * lay.warm_capacity;
  const int n_hot = min(max(cnt[kAkvNHot], 0), lay.hot_capacity);
  const int n_warm = min(max(cnt[kAkvNWarm], 0), lay.warm_capacity);
  const int hb = pol.hot_budget_live ? *pol.hot_budget_live : pol.hot_budget;
  const int recent = AkvRecentProtected(pol, hb);
  const int cap = min(AkvPromoteCap(pol, hb), lay.hot_capacity - n_hot);
  const bool fifo = pol.mode == AkvScoring::kFifo;
  auto identity = [](int i) { return static_cast<int32_t>(i); };

  // Step 4: promotion (largest a first; ties larger pos).
  int np = 0, capped = 0;
  if (cap > 0 && n_warm > 0) {
    auto cand = [&](int j) { return t.warm_a[j] > pol.promote_threshold; };
    auto key = [&](int j) { return AkvKeyDescending(t.warm_a[j], t.warm_pos[j]); };
    const int ncand = BlockCount(n_warm, cand);
    const int k = min(cap, ncand);
    capped = ncand - k;
    if (k > 0) {
      const uint64_t thr = k < ncand ? BlockKthSmallest<64>(n_warm, k, cand, key, &ss) : kAllKeys;
      np = BlockEmit(n_warm, [&](int j) { return cand(j) && key(j) <= thr; }, identity, promote, &es);
    }
  }

  // Step 5: demotion over hot ++ promoted rows (s = 1.0).
  const int vh = n_hot + np;
  int nd = 0, overflow = 0, event = 0;
  if (vh > hb + pol.eviction_batch_size - 1) {
    event = 1;
    const int target = vh - hb;
    auto vpos = [&](int i) { return i < n_hot ? t.hot_pos[i] : t.warm_pos[promote[i - n_hot]]; };
    auto any = [](int) { return true; };
    // The `recent` newest rows are those with pos >= pos_r.
    int pos_r = INT_MAX;
    if (recent >= vh) {
      pos_r = INT_MIN;
    } else if (recent > 0) {
      auto newest = [&](int i) { return static_cast<uint64_t>(~static_cast<uint32_t>(vpos(i))); };
      pos_r = static_cast<int32_t>(~static_cast<uint32_t>(BlockKthSmallest<32>(vh, recent, any, newest, &ss)));
    }
    auto elig = [&](int i) {
      const int32_t pos = vpos(i);
      return pos < pos_r && pos >= pol.initial_tokens_protected;
    };
    auto key = [&](int i) {
      const int32_t pos = vpos(i);
      return fifo ? AkvKeyPos(pos) : AkvKeyAscending(i < n_hot ? t.hot_score[i] : 1.0f, pos);
    };
    const int n_elig = BlockCount(vh, elig);
    const int take = min(min(target, n_elig), lay.warm_capacity - n_warm);
    overflow = target - take;
    if (take > 0) {
      const uint64_t thr = take < n_elig ? BlockKthSmallest<64>(vh, take, elig, key, &ss) : kAllKeys;
      auto sel = [&](int i) { return elig(i) && key(i) <= thr; };
      nd = BlockEmit(n_hot, sel, identity, demote, &es);
      // A promoted row picked for demotion cancels its promotion (stays warm).
      // In place: each chunk reads promote[k] before any of its writes.
      if (np > 0) np = BlockEmit(np, [&](int k) { return !sel(n_hot + k); }, [&](int k) { return promote[k]; },
                                 promote, &es);
    }
  }

  // Step 6: warm -> cold over the warm rows that stay ++ the demoted rows (w = s).
  int nc = 0;
  const int n_virt = n_warm + nd, present_n = n_warm - np + nd;
  const bool trigger = pol.warm_budget == 0 ? present_n > 0 : present_n > pol.warm_budget + pol.eviction_batch_size - 1;
  if (trigger) {
    const int target = present_n - pol.warm_budget;
    auto present = [&](int i) { return i >= n_warm || !InSorted(promote, np, i); };
    auto key = [&](int i) {
      const int row = i < n_warm ? i : demote[i - n_warm];
      const int32_t pos = i < n_warm ? t.warm_pos[row] : t.hot_pos[row];
      return fifo ? AkvKeyPos(pos) : AkvKeyAscending(i < n_warm ? t.warm_score[row] : t.hot_score[row], pos);
    };
    const uint64_t thr = target < present_n ? BlockKthSmallest<64>(n_virt, target, present, key, &ss) : kAllKeys;
    nc = BlockEmit(n_virt, [&](int i) { return present(i) && key(i) <= thr; }, identity, cold, &es);
  }

  if (threadIdx.x == 0) {
    cnt[kAkvNDemote] = nd;
    cnt[kAkvNPromote] = np;
    cnt[kAkvNCold] = nc;
    cnt[kAkvStepHotOverflow] = overflow;
    cnt[kAkvStepPromoteCapped] = capped;
    cnt[kAkvTotHotOverflow] += overflow;
    cnt[kAkvTotPromoteCapped] += capped;
    cnt[kAkvTotDemotionEvents] += event;
  }
}

}  // namespace
}  // namespace akv_detail

cudaError_t LaunchAkvSelect(const AkvSelectParams& p, cudaStream_t stream) {
  if (AkvSelectValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_layers == 0) return cudaSuccess;
  akv_detail::SelectKernel<<<p.num_layers, akv_detail::kSelectThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kvstream
