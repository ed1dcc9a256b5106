#include "engine/kv/akv/akv_buffers.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "engine/kv/akv/akv_cold_scan.h"

namespace kvstream {
namespace {

int64_t RoundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Per-layer bytes of each array of a tier set; the order is the allocation order.
struct TierSizes {
  int64_t hot_kv, hot_meta, warm_codes, warm_groups, warm_meta, counts, lists, stage;
};

TierSizes Sizes(const AkvLayout& l, int stage_rows) {
  const int64_t esz = static_cast<int64_t>(KvDTypeSize(l.dtype));
  TierSizes s;
  s.hot_kv = l.HotLayerElems() * esz;                  // one of K, V
  s.hot_meta = int64_t(l.hot_capacity) * 4;           // one of pos, score
  s.warm_codes = l.WarmLayerBytes();                   // one of K, V
  s.warm_groups = l.WarmLayerGroups() * 2;             // one of 4 scale/zero arrays
  s.warm_meta = int64_t(l.warm_capacity) * 4;          // one of pos, w, a
  s.counts = int64_t(kAkvCountSlots) * 4;
  s.lists = (int64_t(l.hot_capacity) + 2 * int64_t(l.warm_capacity)) * 4;
  // Stage rows: K, V codes + 4 scale/zero arrays + pos + score.
  const int64_t row = 2 * int64_t(l.num_kv_heads) * l.CodeBytes() + 4 * int64_t(l.num_kv_heads) * l.Groups() * 2 + 8;
  s.stage = int64_t(stage_rows) * row;
  return s;
}

int64_t SetBytes(const AkvLayout& l, int layers, int stage_rows) {
  const TierSizes s = Sizes(l, stage_rows);
  return layers * (2 * s.hot_kv + 2 * s.hot_meta + 2 * s.warm_codes + 4 * s.warm_groups + 3 * s.warm_meta +
                   s.counts + s.lists + s.stage);
}

}  // namespace

AkvPlan MakeAkvPlan(const AkvConfig& c, const KvGeometry& g, int64_t max_tokens) {
  AkvPlan p;
  p.max_tokens = max_tokens > 0 ? max_tokens : std::max<int64_t>(g.context_length, 1);
  const int64_t cap_tokens = RoundUp(p.max_tokens, 16);  // no tier can hold more tokens than were seen
  const int64_t L = g.n_layers;
  p.first = c.protect_first_layers;
  p.managed_layers = static_cast<int>(L - c.protect_first_layers - c.protect_last_layers);
  p.dense_layers = static_cast<int>(L) - p.managed_layers;
  p.cold_bits = c.cold_bits;

  AkvLayout base;
  base.num_kv_heads = static_cast<int>(g.n_kv_heads);
  base.head_dim = static_cast<int>(g.head_dim);
  base.warm_bits = c.warm_bits;
  base.group_size = std::min<int>(c.group_size, static_cast<int>(g.head_dim));
  base.dtype = KvDTypeOf(g.dtype);

  // akv.md §3: C_hot = hot + batch + chunk + cap, C_warm = warm + 2*batch + chunk + cap.
  const int hot = c.EffectiveHotBudget(p.max_tokens);
  const int cap = c.PromoteCap(hot);
  const int64_t batch = c.eviction_batch_size, chunk = c.prefill_chunk_tokens;
  p.managed = base;
  p.managed.hot_capacity = static_cast<int>(std::min<int64_t>(hot + batch + chunk + cap, cap_tokens));
  p.managed.warm_capacity =
      static_cast<int>(std::min<int64_t>(int64_t(c.warm_budget) + 2 * batch + chunk + cap, cap_tokens));
  // One step moves at most V_w - warm_budget <= 2*batch + chunk + cap - 1 rows out of warm.
  p.stage_rows = c.enable_cold_tier ? static_cast<int>(std::min<int64_t>(2 * batch + chunk + cap,
                                                                         p.managed.warm_capacity))
                                    : 0;
  // Cold scan (akv_cold_scan.h): a window of W rows per layer, at most one
  // promotion cap taken back per scan.
  if (p.stage_rows > 0 && c.cold_scan_interval > 0 && cap > 0) {
    p.scan_rows = static_cast<int>(std::min<int64_t>(kAkvColdScanWindowRows, cap_tokens));
    p.scan_picks = std::min(cap, p.scan_rows);
  }
  p.dense = base;
  p.dense.hot_capacity = static_cast<int>(cap_tokens);
  p.dense.warm_capacity = 0;
  return p;
}

int64_t AkvPlan::DeviceBytes(bool cuda, int64_t num_heads) const {
  int64_t bytes = SetBytes(managed, managed_layers, stage_rows) + SetBytes(dense, dense_layers, 0);
  // Scratch kept by the sequence: positions and lse of the largest step and,
  // on CUDA, the re-quantization buffers of the cold path (akv_cache.h).
  const int64_t M = StepRows();
  bytes += M * 4 + M * num_heads * 4;
  // CUDA: each managed layer's decode lse, read by the score update that runs
  // aside (akv_cache_cuda.cc).
  if (cuda) bytes += std::max(managed_layers, 1) * int64_t(num_heads) * 4;
  // CUDA: one batched-decode row descriptor per model layer (akv_batched_decode.h).
  if (cuda) bytes += int64_t(managed_layers + dense_layers) * static_cast<int64_t>(sizeof(AkvAttnSeq));
  if (cuda && stage_rows > 0) {
    const int64_t hd = int64_t(managed.num_kv_heads) * managed.head_dim;
    const int64_t cold_row = 2 * int64_t(managed.num_kv_heads) * (managed.head_dim * cold_bits / 8) +
                             4 * int64_t(managed.num_kv_heads) * managed.Groups() * 2 + 8;
    bytes += int64_t(stage_rows) * hd * 4 + int64_t(managed_layers) * stage_rows * cold_row;
  }
  // CUDA: the cold scan's window, query copies and promotion stage.
  if (cuda && scan_rows > 0) bytes += MakeAkvScanLayout(*this, num_heads).total;
  return bytes;
}

AkvScanLayout MakeAkvScanLayout(const AkvPlan& p, int64_t num_heads) {
  const AkvLayout& l = p.managed;
  const int64_t Lm = p.managed_layers, W = p.scan_rows, P = p.scan_picks, hkv = l.num_kv_heads, D = l.head_dim;
  const int64_t esz = static_cast<int64_t>(KvDTypeSize(l.dtype)), gn = l.Groups();
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    const int64_t o = at;
    at = RoundUp(at + bytes, 256);
    return o;
  };
  AkvScanLayout s;
  s.win_k = take(Lm * W * hkv * (D * p.cold_bits / 8));
  s.win_scale = take(Lm * W * hkv * gn * 2);
  s.win_zero = take(Lm * W * hkv * gn * 2);
  s.win_pos = take(Lm * W * 4);
  s.win_counts = take(Lm * kAkvCountSlots * 4);
  s.win_qpos = take(4);
  s.win_end = at;
  s.hot = take(Lm * hkv * D * esz);
  s.hot_meta = take(Lm * 2 * 4);
  s.win_w = take(Lm * W * 4);
  s.win_a = take(Lm * W * 4);
  s.q_live = take(Lm * num_heads * D * esz);
  s.q_frozen = take(Lm * num_heads * D * esz);
  s.lse_live = take(Lm * num_heads * 4);
  s.lse_frozen = take(Lm * num_heads * 4);
  s.stage_begin = at;
  s.st_k = take(Lm * P * hkv * l.CodeBytes());
  s.st_v = take(Lm * P * hkv * l.CodeBytes());
  s.st_groups = take(4 * Lm * P * hkv * gn * 2);
  s.st_pos = take(Lm * P * 4);
  s.st_score = take(Lm * P * 4);
  s.st_rows = take(Lm * 4);
  s.stage_end = at;
  s.total = at;
  s.host_bytes = s.win_end + (s.stage_end - s.stage_begin) + Lm * W * 4;
  return s;
}

AkvTierSet AllocateTierSet(const AkvLayout& l, int layers, int stage_rows, c10::Device device) {
  AkvTierSet t;
  t.layout = l;
  t.num_layers = layers;
  t.stage_rows = stage_rows;
  if (layers == 0) return t;
  const TierSizes s = Sizes(l, stage_rows);
  auto opt = at::TensorOptions().device(device);
  const c10::ScalarType hot_t = l.dtype == KvDType::kFp32 ? at::kFloat : l.dtype == KvDType::kFp16 ? at::kHalf
                                                                                                    : at::kBFloat16;
  const int64_t L = layers, Ch = l.hot_capacity, Cw = l.warm_capacity, Hkv = l.num_kv_heads;
  t.hot_k = at::zeros({L, Ch, Hkv, l.head_dim}, opt.dtype(hot_t));
  t.hot_v = at::zeros({L, Ch, Hkv, l.head_dim}, opt.dtype(hot_t));
  t.hot_pos = at::zeros({L, Ch}, opt.dtype(at::kInt));
  t.hot_score = at::zeros({L, Ch}, opt.dtype(at::kFloat));
  if (Cw > 0) {
    t.warm_k = at::zeros({L, Cw, Hkv, l.CodeBytes()}, opt.dtype(at::kByte));
    t.warm_v = at::zeros({L, Cw, Hkv, l.CodeBytes()}, opt.dtype(at::kByte));
    t.warm_scale_zero = at::zeros({4, L, Cw, Hkv, l.Groups()}, opt.dtype(at::kShort));
    t.warm_pos = at::zeros({L, Cw}, opt.dtype(at::kInt));
    t.warm_score = at::zeros({L, Cw}, opt.dtype(at::kFloat));
    t.warm_a = at::zeros({L, Cw}, opt.dtype(at::kFloat));
  }
  t.counts = at::zeros({L, kAkvCountSlots}, opt.dtype(at::kInt));
  t.lists = at::zeros({L * (Ch + 2 * Cw)}, opt.dtype(at::kInt));
  if (stage_rows > 0) t.stage = at::zeros({L * s.stage}, opt.dtype(at::kByte));
  return t;
}

AkvTiers AkvTierSet::Tiers() const {
  AkvTiers r;
  if (num_layers == 0) return r;
  r.hot_k = hot_k.data_ptr();
  r.hot_v = hot_v.data_ptr();
  r.hot_pos = hot_pos.data_ptr<int32_t>();
  r.hot_score = hot_score.data_ptr<float>();
  if (warm_k.defined()) {
    r.warm_k = warm_k.data_ptr<uint8_t>();
    r.warm_v = warm_v.data_ptr<uint8_t>();
    auto* sz = reinterpret_cast<uint16_t*>(warm_scale_zero.data_ptr<int16_t>());
    const int64_t n = layout.WarmLayerGroups() * num_layers;
    r.warm_k_scale = sz;
    r.warm_k_zero = sz + n;
    r.warm_v_scale = sz + 2 * n;
    r.warm_v_zero = sz + 3 * n;
    r.warm_pos = warm_pos.data_ptr<int32_t>();
    r.warm_score = warm_score.data_ptr<float>();
    r.warm_a = warm_a.data_ptr<float>();
  }
  r.counts = counts.data_ptr<int32_t>();
  return r;
}

AkvLists AkvTierSet::Lists() const {
  AkvLists r;
  if (num_layers == 0) return r;
  int32_t* base = lists.data_ptr<int32_t>();
  const int64_t L = num_layers;
  r.demote = base;
  r.promote = base + L * layout.hot_capacity;
  r.cold = r.promote + L * layout.warm_capacity;
  return r;
}

AkvColdStage AkvTierSet::Stage() const {
  AkvColdStage s;
  if (stage_rows == 0 || num_layers == 0) return s;
  const int64_t rows = int64_t(num_layers) * stage_rows;
  const int64_t codes = rows * layout.num_kv_heads * layout.CodeBytes();
  const int64_t groups = rows * layout.num_kv_heads * layout.Groups();
  uint8_t* p = stage.data_ptr<uint8_t>();
  s.rows_per_layer = stage_rows;
  s.k = p;
  s.v = p + codes;
  auto* g = reinterpret_cast<uint16_t*>(p + 2 * codes);
  s.k_scale = g;
  s.k_zero = g + groups;
  s.v_scale = g + 2 * groups;
  s.v_zero = g + 3 * groups;
  s.pos = reinterpret_cast<int32_t*>(g + 4 * groups);
  s.score = reinterpret_cast<float*>(s.pos + rows);
  return s;
}

int64_t AkvTierSet::BytesHot() const {
  return num_layers == 0 ? 0 : hot_k.nbytes() + hot_v.nbytes();
}

int64_t AkvTierSet::BytesWarm() const {
  return warm_k.defined() ? warm_k.nbytes() + warm_v.nbytes() + warm_scale_zero.nbytes() : 0;
}

int64_t AkvTierSet::BytesMetadata() const {
  if (num_layers == 0) return 0;
  int64_t b = hot_pos.nbytes() + hot_score.nbytes() + counts.nbytes() + lists.nbytes();
  if (warm_k.defined()) b += warm_pos.nbytes() + warm_score.nbytes() + warm_a.nbytes();
  if (stage.defined()) b += stage.nbytes();
  return b;
}

}  // namespace kvstream
