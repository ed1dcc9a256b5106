// LaserKvSequenceCache::CompactBlock: candidates (§4.3 step 3), selection
// (steps 4-5, laser_kv_select.cc) and the update (step 6) of one block, and
// the end of prefill (§4.4: C <- C ++ T).
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kv/laser_kv/laser_kv_ops.h"
#include "engine/kv/laser_kv/laser_kv_select.h"
#include "engine/kv/laser_kv/laser_kv_strategy.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace

absl::Status LaserKvSequenceCache::CompactBlock(const SeqStep& seq) {
  // Counts for this block (a short last block picks fewer: laser_kv_config.h).
  const LaserBudget b = LaserBlockBudget(config_, *budget_, b_len_);
  const bool accumulate = config_.mode == LaserMode::kAccumulate;
  const LaserBlockSlots slots = LaserSlots(b_start_, b_len_, b.A, b.W);
  const int32_t c_len = static_cast<int32_t>(c_len_), t_len = static_cast<int32_t>(t_pos_.size());
  const int32_t blk = c_len + t_len;  // concatenated index of block row 0 (C ++ T ++ block)
  const bool last = b_start_ + b_len_ >= b.S;
  // accumulate: the K1 window is C's first `sink` rows (anchors), T, block (header).
  const int32_t sink = accumulate ? static_cast<int32_t>(sink_len_) : 0;

  // ---- candidates, list order (§4.3 step 3) ---------------------------------
  LaserSelectInput in;
  std::vector<bool> c_anchor;  // recursive: C entries kept as anchors (position < A, §6.6)
  if (accumulate) {
    for (int32_t j = 0; j < t_len; ++j) {  // the previous tail competes again
      in.rows.push_back(c_len + j);
      in.win.push_back(sink + j);
      in.pos.push_back(t_pos_[j]);
    }
    tail_candidates_ += t_len;
  } else {
    for (int32_t j = 0; j < c_len; ++j) {
      if (c_pos_[j] < b.A) continue;
      in.rows.push_back(j);
      in.win.push_back(j);
      in.pos.push_back(c_pos_[j]);
    }
    history_candidates_ += static_cast<int64_t>(in.rows.size());
  }
  const int32_t win_blk = accumulate ? sink + t_len : c_len;  // window index of block row 0
  for (int64_t j = slots.anchors_end; j < slots.local_begin; ++j) {
    in.rows.push_back(blk + static_cast<int32_t>(j));
    in.win.push_back(win_blk + static_cast<int32_t>(j));
    in.pos.push_back(static_cast<int32_t>(b_start_ + j));
  }
  window_tokens_ += scores_.numel();

  // ---- selection (steps 4-5) -------------------------------------------------
  LaserPicks picks;
  if (!in.rows.empty()) {
    // Score pooling (header): the exact selector ranks by K1b over the window.
    const bool exact_ranks = (b.first == LaserSelector::kExact && b.first_count > 0) ||
                             (b.second == LaserSelector::kExact && b.second_count > 0);
    at::Tensor ranked = scores_;
    if (exact_ranks && kLaserScorePoolRadius > 0) {
      const auto t_pool = Clock::now();
      // The K1 window: anchors ++ T (or C), then the block.
      std::vector<int32_t> wpos(c_pos_.begin(), c_pos_.begin() + sink);
      const std::vector<int32_t>& mid = accumulate ? t_pos_ : c_pos_;
      wpos.insert(wpos.end(), mid.begin(), mid.end());
      for (int64_t j = 0; j < b_len_; ++j) wpos.push_back(static_cast<int32_t>(b_start_ + j));
      if (static_cast<int64_t>(wpos.size()) != scores_.numel()) {
        return absl::InternalError(absl::StrCat("laser_kv: window of ", wpos.size(), " positions for ",
                                                scores_.numel(), " scores"));
      }
      at::Tensor wpos_h = at::empty({static_cast<int64_t>(wpos.size())}, at::kInt);
      std::copy(wpos.begin(), wpos.end(), wpos_h.mutable_data_ptr<int32_t>());
      const at::Tensor wpos_d = wpos_h.to(scores_.device());
      ranked = at::empty_like(scores_);
      NotePeak(Bytes(ranked) + Bytes(wpos_d));
      LaserPoolScoresParams pp;
      pp.scores = scores_.const_data_ptr<float>();
      pp.pos = wpos_d.const_data_ptr<int32_t>();
      pp.out = ranked.mutable_data_ptr<float>();
      pp.num = static_cast<int>(scores_.numel());
      pp.radius = kLaserScorePoolRadius;
      KV_RETURN_IF_ERROR(LaserPoolScores(pp, geometry_.device));
      scoring_ms_ += MsSince(t_pool);
    }
    const int64_t last_layer = geometry_.n_layers - 1;
    if ((b.first == LaserSelector::kLsh && b.first_count > 0) || (b.second == LaserSelector::kLsh && b.second_count > 0)) {
      if (!projection_.defined()) {  // §6.7: made on the host once, uploaded
        const int D = static_cast<int>(geometry_.head_dim), L = static_cast<int>(config_.num_tables);
        const int K = static_cast<int>(config_.num_bits);
        at::Tensor r = at::empty({D, L * K}, at::kFloat);
        if (!LaserMakeProjection(config_.lsh_seed, D, L, K, r.mutable_data_ptr<float>())) {
          return absl::InternalError("laser_kv: LaserMakeProjection refused (D, L, K)");
        }
        projection_ = r.to(geometry_.device);
      }
    }
    in.scores = ranked;
    in.probe_keys = probe_keys_;
    in.projection = projection_.defined() ? projection_ : scores_;
    const at::Tensor* ks[3] = {&ck_, &tk_, &bk_};
    const int64_t lens[3] = {c_len_, t_len, b_len_};
    for (int s = 0; s < 3; ++s) {
      in.last_layer[s] = LaserSegment{};
      if (lens[s] == 0 || !ks[s]->defined()) continue;
      const at::Tensor& t = *ks[s];
      in.last_layer[s].k = static_cast<const char*>(t.const_data_ptr()) + last_layer * t.stride(0) * t.element_size();
      in.last_layer[s].len = static_cast<int>(lens[s]);
      in.last_layer[s].stride_h = t.stride(1);
      in.last_layer[s].stride_j = t.stride(2);
    }
    in.num_kv_heads = static_cast<int>(geometry_.n_kv_heads);
    in.head_dim = static_cast<int>(geometry_.head_dim);
    in.dtype = KvDTypeOf(geometry_.dtype);
    KV_ASSIGN_OR_RETURN(picks, LaserSelectGlobal(config_, b, in));
  }
  scoring_ms_ += picks.scoring_ms;
  lsh_ms_ += picks.lsh_ms;
  picks_exact_ += static_cast<int64_t>(picks.exact.size());
  picks_lsh_ += static_cast<int64_t>(picks.lsh.size());
  lsh_survivors_ += picks.lsh_survivors;
  lsh_fallback_ += picks.lsh_fallback;

  // ---- update (step 6) -------------------------------------------------------
  const auto t0 = Clock::now();
  std::vector<int32_t> picked;  // concatenated indices
  for (const auto* set : {&picks.exact, &picks.lsh}) {
    for (int32_t i : *set) picked.push_back(in.rows[i]);
  }
  std::vector<int32_t> keep;
  if (accumulate) {
    for (int32_t j = 0; j < c_len; ++j) keep.push_back(j);
  } else {
    for (int32_t j = 0; j < c_len; ++j) {
      if (c_pos_[j] < b.A) keep.push_back(j);
    }
  }
  for (int64_t j = 0; j < slots.anchors_end; ++j) keep.push_back(blk + static_cast<int32_t>(j));
  std::vector<int32_t> local;
  for (int64_t j = slots.local_begin; j < b_len_; ++j) local.push_back(blk + static_cast<int32_t>(j));
  if (!accumulate || last) keep.insert(keep.end(), local.begin(), local.end());  // §4.4: C <- C ++ T
  keep.insert(keep.end(), picked.begin(), picked.end());
  std::sort(keep.begin(), keep.end());  // concatenated order = position order
  for (int32_t r : picked) {
    if (r >= c_len && r < blk) ++tail_reselected_;
  }

  const int64_t M = static_cast<int64_t>(keep.size());
  // Room for the query and the generated tokens after the last block.
  const int64_t room = last ? std::max<int64_t>(max_tokens_ > 0 ? max_tokens_ - b.S : 0, b.q) : 0;
  at::Tensor nk, nv, ntk, ntv;
  std::vector<int32_t> npos, ntpos;
  KV_RETURN_IF_ERROR(Gather(keep, M + room, &nk, &nv, &npos));
  if (accumulate && !last) KV_RETURN_IF_ERROR(Gather(local, static_cast<int64_t>(local.size()), &ntk, &ntv, &ntpos));
  NotePeak(Bytes(nk) + Bytes(nv) + Bytes(ntk) + Bytes(ntv));  // out of place: old and new alive
  ck_ = std::move(nk);
  cv_ = std::move(nv);
  c_len_ = M;
  c_pos_ = std::move(npos);
  tk_ = std::move(ntk);
  tv_ = std::move(ntv);
  t_pos_ = std::move(ntpos);
  if (!accumulate || last) {
    tk_ = at::Tensor();
    tv_ = at::Tensor();
    t_pos_.clear();
  }
  ++blocks_done_;
  if (last) {  // block staging, probe and scores die with the block loop
    bk_ = at::Tensor();
    bv_ = at::Tensor();
    b_len_ = 0;
    probe_keys_ = at::Tensor();
    kept_after_prefill_ = c_len_;
  }
  scores_ = at::Tensor();
  compaction_ms_ += MsSince(t0);
  (void)seq;
  return absl::OkStatus();
}

}  // namespace kvstream
