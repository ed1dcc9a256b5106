#include "engine/kv/laser_kv/laser_kv_select.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

#include "engine/kv/laser_kv/laser_kv_ops.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Host int32 vector -> tensor on `device` (a copy: the vector may die first).
at::Tensor Upload(const std::vector<int32_t>& v, c10::Device device) {
  at::Tensor h = at::empty({static_cast<int64_t>(v.size())}, at::kInt);
  std::copy(v.begin(), v.end(), h.mutable_data_ptr<int32_t>());
  return h.to(device);
}

template <class T>
std::vector<T> Download(const at::Tensor& t) {
  const at::Tensor h = t.cpu().contiguous();
  const T* p = static_cast<const T*>(h.const_data_ptr());
  return std::vector<T>(p, p + h.numel());
}

// K7: the k largest keys' indices, ascending.
absl::StatusOr<std::vector<int32_t>> TopK(const at::Tensor& keys, int k) {
  const int n = static_cast<int>(keys.numel());
  const c10::Device dev = keys.device();
  const int kk = std::min(k, n);
  at::Tensor out = at::empty({std::max(kk, 1)}, keys.options().dtype(at::kInt));
  const size_t ws = LaserSelectTopkScratch(n, k, dev);
  at::Tensor work = at::empty({static_cast<int64_t>(std::max<size_t>(ws, 1))}, keys.options().dtype(at::kByte));
  LaserSelectTopkParams p;
  p.keys = reinterpret_cast<const uint64_t*>(keys.const_data_ptr());
  p.out = out.mutable_data_ptr<int32_t>();
  p.workspace = work.mutable_data_ptr();
  p.workspace_bytes = ws;
  p.num = n;
  p.k = k;
  KV_RETURN_IF_ERROR(LaserSelectTopk(p, dev));
  std::vector<int32_t> r = Download<int32_t>(out);
  r.resize(static_cast<size_t>(kk));
  return r;
}

at::Tensor EmptyKeys(int64_t n, c10::Device dev) {
  return at::empty({std::max<int64_t>(n, 1)}, at::TensorOptions().device(dev).dtype(at::kLong));
}

class Selector {
 public:
  Selector(const LaserKvConfig& c, const LaserSelectInput& in) : c_(c), in_(in), dev_(in.scores.device()) {}

  // Exact (§4.3 step 4): the top k of `sub` by window score, later position first on ties.
  absl::StatusOr<std::vector<int32_t>> Exact(const std::vector<int32_t>& sub, int64_t k) {
    std::vector<int32_t> win, pos;
    for (int32_t i : sub) {
      win.push_back(in_.win[i]);
      pos.push_back(in_.pos[i]);
    }
    const at::Tensor win_d = Upload(win, dev_), pos_d = Upload(pos, dev_);
    at::Tensor keys = EmptyKeys(static_cast<int64_t>(sub.size()), dev_);
    LaserMakeKeysParams p;
    p.mode = LaserKeyMode::kExact;
    p.score = in_.scores.const_data_ptr<float>();
    p.score_rows = win_d.const_data_ptr<int32_t>();
    p.pos = pos_d.const_data_ptr<int32_t>();
    p.keys = reinterpret_cast<uint64_t*>(keys.mutable_data_ptr());
    p.num = static_cast<int>(sub.size());
    KV_RETURN_IF_ERROR(LaserMakeKeys(p, dev_));
    return Map(sub, TopK(keys.narrow(0, 0, static_cast<int64_t>(sub.size())), static_cast<int>(k)));
  }

  // LSH (§4.3 step 5): magicpig_baseline or frequency_rank over `sub`.
  absl::StatusOr<std::vector<int32_t>> Lsh(const std::vector<int32_t>& sub, int64_t k) {
    const int n = static_cast<int>(sub.size()), q = static_cast<int>(in_.probe_keys.size(1));
    const int D = in_.head_dim, L = static_cast<int>(c_.num_tables), K = static_cast<int>(c_.num_bits);
    const int w = LaserCodeWords(L, K);
    const auto f32 = at::TensorOptions().device(dev_).dtype(at::kFloat);
    // Head means (K2): candidates from the last layer's C/T/block, queries from the probe keys.
    std::vector<int32_t> rows;
    for (int32_t i : sub) rows.push_back(in_.rows[i]);
    const at::Tensor rows_d = Upload(rows, dev_);
    at::Tensor v = at::empty({n, D}, f32), u = at::empty({q, D}, f32), mu = at::empty({D}, f32);
    LaserHeadMeanParams hv;
    for (int s = 0; s < kLaserMaxSegments; ++s) hv.seg[s] = in_.last_layer[s];
    hv.rows = rows_d.const_data_ptr<int32_t>();
    hv.out = v.mutable_data_ptr<float>();
    hv.num_rows = n;
    hv.num_kv_heads = in_.num_kv_heads;
    hv.head_dim = D;
    hv.dtype = in_.dtype;
    KV_RETURN_IF_ERROR(LaserHeadMean(hv, dev_));
    LaserHeadMeanParams hu = hv;
    for (int s = 0; s < kLaserMaxSegments; ++s) hu.seg[s] = LaserSegment{};
    hu.seg[0].k = in_.probe_keys.const_data_ptr();
    hu.seg[0].len = q;
    hu.seg[0].stride_h = in_.probe_keys.stride(0);
    hu.seg[0].stride_j = in_.probe_keys.stride(1);
    hu.rows = nullptr;
    hu.out = u.mutable_data_ptr<float>();
    hu.num_rows = q;
    KV_RETURN_IF_ERROR(LaserHeadMean(hu, dev_));
    // Centre on the candidates' mean (K3a), hash both (K3).
    LaserColumnMeanParams cm;
    cm.v = v.const_data_ptr<float>();
    cm.mu = mu.mutable_data_ptr<float>();
    cm.num_rows = n;
    cm.head_dim = D;
    KV_RETURN_IF_ERROR(LaserColumnMean(cm, dev_));
    const auto i32 = f32.dtype(at::kInt);
    const auto u64 = f32.dtype(at::kLong);
    at::Tensor cv = at::empty({n, L}, i32), cu = at::empty({q, L}, i32);
    at::Tensor bv = at::empty({n, w}, u64), bu = at::empty({q, w}, u64);
    LaserLshHashParams h;
    h.mu = mu.const_data_ptr<float>();
    h.r = in_.projection.const_data_ptr<float>();
    h.head_dim = D;
    h.num_tables = L;
    h.num_bits = K;
    h.v = v.const_data_ptr<float>();
    h.codes = cv.mutable_data_ptr<int32_t>();
    h.bits = reinterpret_cast<uint64_t*>(bv.mutable_data_ptr());
    h.num_rows = n;
    KV_RETURN_IF_ERROR(LaserLshHash(h, dev_));
    h.v = u.const_data_ptr<float>();
    h.codes = cu.mutable_data_ptr<int32_t>();
    h.bits = reinterpret_cast<uint64_t*>(bu.mutable_data_ptr());
    h.num_rows = q;
    KV_RETURN_IF_ERROR(LaserLshHash(h, dev_));
    // Collision counts (K4).
    at::Tensor counts = at::empty({n}, f32.dtype(at::kByte));
    at::Tensor bitmap = at::empty({static_cast<int64_t>(LaserCollisionWorkspaceBytes(L, K) / 4 + 1)}, i32);
    LaserCollisionCountParams cc;
    cc.query_codes = cu.const_data_ptr<int32_t>();
    cc.cand_codes = cv.const_data_ptr<int32_t>();
    cc.counts = counts.mutable_data_ptr<uint8_t>();
    cc.bitmap = reinterpret_cast<uint32_t*>(bitmap.mutable_data_ptr());
    cc.num_query = q;
    cc.num_cand = n;
    cc.num_tables = L;
    cc.num_bits = K;
    KV_RETURN_IF_ERROR(LaserCollisionCount(cc, dev_));

    at::Tensor keys = EmptyKeys(n, dev_);
    LaserMakeKeysParams mk;
    mk.keys = reinterpret_cast<uint64_t*>(keys.mutable_data_ptr());
    if (c_.lsh_mode == LaserLshMode::kFrequencyRank) {
      at::Tensor dist;
      if (c_.tie_break != LaserTieBreak::kNone) {
        dist = at::empty({n}, f32);
        at::Tensor stats = at::empty({static_cast<int64_t>(LaserTiebreakWorkspaceBytes(D) / 4 + 1)}, f32);
        LaserTiebreakParams tb;
        tb.v = v.const_data_ptr<float>();
        tb.u = u.const_data_ptr<float>();
        tb.mu = mu.const_data_ptr<float>();
        tb.dist = dist.mutable_data_ptr<float>();
        tb.stats = stats.mutable_data_ptr<float>();
        tb.num_cand = n;
        tb.num_query = q;
        tb.head_dim = D;
        tb.mode = c_.tie_break;
        KV_RETURN_IF_ERROR(LaserTiebreak(tb, dev_));
      }
      mk.mode = LaserKeyMode::kFrequency;
      mk.counts = counts.const_data_ptr<uint8_t>();
      mk.dist = dist.defined() ? dist.const_data_ptr<float>() : nullptr;
      mk.num = n;
      KV_RETURN_IF_ERROR(LaserMakeKeys(mk, dev_));
      return Map(sub, TopK(keys.narrow(0, 0, n), static_cast<int>(k)));
    }
    // magicpig_baseline: survivors have >= 2 collisions (§4.3 step 5).
    const std::vector<uint8_t> cnt = Download<uint8_t>(counts);
    std::vector<int32_t> surv, surv_pos;
    for (int j = 0; j < n; ++j) {
      if (cnt[j] >= 2) {
        surv.push_back(j);
        surv_pos.push_back(in_.pos[sub[j]]);
      }
    }
    survivors += static_cast<int64_t>(surv.size());
    std::vector<int32_t> chosen;  // indices into sub
    if (surv.empty()) {           // none: the last k candidates of the list
      for (int j = n - static_cast<int>(k); j < n; ++j) chosen.push_back(j);
      fallback += k;
    } else if (static_cast<int64_t>(surv.size()) <= k) {
      // All survivors, then the latest unchosen candidates from the list's end.
      std::vector<bool> taken(static_cast<size_t>(n), false);
      for (int32_t j : surv) taken[j] = true;
      chosen = surv;
      for (int j = n - 1; j >= 0 && static_cast<int64_t>(chosen.size()) < k; --j) {
        if (!taken[j]) {
          chosen.push_back(j);
          ++fallback;
        }
      }
      std::sort(chosen.begin(), chosen.end());
    } else {  // best match M_j = max_t equal bits (K5), ranked with position (§6.8, §6.9)
      const at::Tensor surv_d = Upload(surv, dev_), spos_d = Upload(surv_pos, dev_);
      const int ns = static_cast<int>(surv.size());
      at::Tensor best = at::empty({ns}, f32.dtype(at::kShort));
      LaserBestMatchParams bm;
      bm.query_bits = reinterpret_cast<const uint64_t*>(bu.const_data_ptr());
      bm.cand_bits = reinterpret_cast<const uint64_t*>(bv.const_data_ptr());
      bm.rows = surv_d.const_data_ptr<int32_t>();
      bm.best = reinterpret_cast<uint16_t*>(best.mutable_data_ptr());
      bm.num_query = q;
      bm.num_rows = ns;
      bm.num_tables = L;
      bm.num_bits = K;
      KV_RETURN_IF_ERROR(LaserBestMatch(bm, dev_));
      mk.mode = LaserKeyMode::kMagicpig;
      mk.best = reinterpret_cast<const uint16_t*>(best.const_data_ptr());
      mk.pos = spos_d.const_data_ptr<int32_t>();
      mk.num = ns;
      KV_RETURN_IF_ERROR(LaserMakeKeys(mk, dev_));
      KV_ASSIGN_OR_RETURN(std::vector<int32_t> top, TopK(keys.narrow(0, 0, ns), static_cast<int>(k)));
      for (int32_t t : top) chosen.push_back(surv[t]);
    }
    return Map(sub, absl::StatusOr<std::vector<int32_t>>(std::move(chosen)));
  }

  int64_t survivors = 0, fallback = 0;

 private:
  static absl::StatusOr<std::vector<int32_t>> Map(const std::vector<int32_t>& sub,
                                                  absl::StatusOr<std::vector<int32_t>> local) {
    if (!local.ok()) return local.status();
    std::vector<int32_t> out;
    for (int32_t j : *local) out.push_back(sub[j]);
    return out;
  }

  const LaserKvConfig& c_;
  const LaserSelectInput& in_;
  c10::Device dev_;
};

}  // namespace

absl::StatusOr<LaserPicks> LaserSelectGlobal(const LaserKvConfig& config, const LaserBudget& budget,
                                             const LaserSelectInput& in) {
  LaserPicks out;
  const int32_t nc = static_cast<int32_t>(in.rows.size());
  std::vector<int32_t> rest(static_cast<size_t>(nc));
  for (int32_t i = 0; i < nc; ++i) rest[i] = i;
  Selector sel(config, in);
  const std::pair<LaserSelector, int64_t> stages[2] = {{budget.first, budget.first_count},
                                                       {budget.second, budget.second_count}};
  for (const auto& [which, count] : stages) {
    if (count <= 0 || rest.empty()) continue;
    const auto t0 = Clock::now();
    std::vector<int32_t> chosen;
    if (count >= static_cast<int64_t>(rest.size())) {
      chosen = rest;  // G_x covers every candidate left: nothing to rank
    } else if (which == LaserSelector::kExact) {
      KV_ASSIGN_OR_RETURN(chosen, sel.Exact(rest, count));
    } else {
      KV_ASSIGN_OR_RETURN(chosen, sel.Lsh(rest, count));
    }
    std::sort(chosen.begin(), chosen.end());
    std::vector<int32_t>& dst = which == LaserSelector::kExact ? out.exact : out.lsh;
    (which == LaserSelector::kExact ? out.scoring_ms : out.lsh_ms) += MsSince(t0);
    std::vector<int32_t> left;
    std::set_difference(rest.begin(), rest.end(), chosen.begin(), chosen.end(), std::back_inserter(left));
    rest.swap(left);
    std::vector<int32_t> merged;
    std::merge(dst.begin(), dst.end(), chosen.begin(), chosen.end(), std::back_inserter(merged));
    dst.swap(merged);
  }
  out.lsh_survivors = sel.survivors;
  out.lsh_fallback = sel.fallback;
  return out;
}

}  // namespace kvstream
