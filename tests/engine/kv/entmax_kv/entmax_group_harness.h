// Decode rows of several EntmaxKV sequences through one strategy's
// ForwardGroup (eager batched, or PrepareDecode + decode_prepared, the step a
// CUDA graph captures) against another strategy's per-sequence Forward on the
// same inputs (rounded to the grouped side's dtype): the CPU test runs both on
// the twins, the CUDA test the kernels against the twins.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "engine/kv/entmax_kv/entmax_kv_strategy.h"

namespace kvstream::entmax_test {

inline StrategyConfig GroupCfg(int64_t budget, int64_t max_tokens, int64_t page_size = 16) {
  StrategyConfig c;
  c.strategy = "entmax_kv";
  c.knobs = {{"token_budget", budget}, {"dense_layers", int64_t{1}}, {"sink_pages", int64_t{1}},
             {"page_size", page_size}};
  c.max_tokens = max_tokens;
  return c;
}

struct GroupRun {
  double worst = 0;  // max relative error of a grouped decode row vs the per-sequence one
  std::vector<CacheReport> grouped, single;
};

// prompt[i] tokens then `decode` steps per row; budget[i] per row (rows with
// another budget than row 0's take the per-sequence path inside ForwardGroup,
// and cannot be prepared). prepared: PrepareDecode with `padded_rows` rows.
// Every row has pages of `page_size` tokens.
inline GroupRun RunGroupVsSingle(const KvGeometry& gg, const KvGeometry& gs, const std::vector<int64_t>& prompt,
                                 const std::vector<int64_t>& budget, int64_t decode, bool prepared,
                                 int64_t padded_rows, uint64_t seed, int64_t page_size = 16) {
  GroupRun r;
  const int64_t H = gg.n_heads, Hkv = gg.n_kv_heads, D = gg.head_dim, L = gg.n_layers;
  const int64_t N = static_cast<int64_t>(prompt.size());
  EntmaxKvStrategy grouped(gg, gg.kv_pool_bytes), single(gs, gs.kv_pool_bytes);
  std::vector<std::unique_ptr<SequenceCache>> a, b;
  for (int64_t i = 0; i < N; ++i) {
    auto oa = grouped.Open(GroupCfg(budget[i], prompt[i] + decode, page_size));
    auto ob = single.Open(GroupCfg(budget[i], prompt[i] + decode, page_size));
    EXPECT_TRUE(oa.ok() && ob.ok()) << oa.status() << ob.status();
    if (!oa.ok() || !ob.ok()) return r;
    a.push_back(std::move(*oa));
    b.push_back(std::move(*ob));
  }
  at::manual_seed(seed);
  // CPU fp32 inputs rounded to the grouped side's dtype; each side gets its copy.
  auto make = [&](std::vector<int64_t> shape, double scale) {
    return (at::randn(shape) * scale).to(gg.dtype).to(at::kFloat);
  };
  auto to_g = [&](const at::Tensor& x) { return x.to(gg.device, gg.dtype); };
  auto to_s = [&](const at::Tensor& x) { return x.to(gs.device, gs.dtype); };
  int64_t step = 0;
  for (int64_t i = 0; i < N; ++i) {  // prefill, one sequence at a time on both sides
    SeqStep s;
    s.n_new = prompt[i];
    s.is_prompt = s.last_prompt_chunk = true;
    StepContext ctx;
    ctx.step = step++;
    for (int64_t l = 0; l < L; ++l) {
      const at::Tensor q = make({H, prompt[i], D}, 1.0), k = make({Hkv, prompt[i], D}, 1.5),
                       v = make({Hkv, prompt[i], D}, 1.0);
      EXPECT_TRUE(a[i]->Forward(l, to_g(q), to_g(k), to_g(v), s, ctx).ok());
      EXPECT_TRUE(b[i]->Forward(l, to_s(q), to_s(k), to_s(v), s, ctx).ok());
    }
    EXPECT_TRUE(a[i]->EndStep(s, ctx).ok() && b[i]->EndStep(s, ctx).ok());
  }
  std::vector<SequenceCache*> seqs;
  for (auto& c : a) seqs.push_back(c.get());
  const int64_t R = prepared ? padded_rows : N;
  for (int64_t d = 0; d < decode; ++d) {
    std::vector<SeqStep> steps(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) steps[i].start_pos = prompt[i] + d, steps[i].n_new = 1;
    StepContext ctx;
    ctx.step = step++;
    if (prepared) {
      const absl::StatusOr<int64_t> key = grouped.PrepareDecode(seqs, steps, R, ctx);
      EXPECT_TRUE(key.ok()) << key.status();
      if (!key.ok()) return r;
      ctx.decode_prepared = true;
    }
    for (int64_t l = 0; l < L; ++l) {
      const at::Tensor q = make({R, H, D}, 1.0), k = make({R, Hkv, D}, 1.5), v = make({R, Hkv, D}, 1.0);
      GroupTensors t;
      t.q = to_g(q), t.k = to_g(k), t.v = to_g(v);
      t.out = at::full({R, H, D}, NAN, t.q.options());
      for (int64_t i = 0; i < N; ++i) t.row_offset.push_back(i);
      const absl::Status st = grouped.ForwardGroup(l, seqs, steps, t, ctx);
      EXPECT_TRUE(st.ok()) << st;
      if (!st.ok()) return r;
      const at::Tensor got_all = t.out.to(at::kCPU, at::kFloat);
      StepContext plain = ctx;
      plain.decode_prepared = false;
      for (int64_t i = 0; i < N; ++i) {
        auto want = b[i]->Forward(l, to_s(q[i].unsqueeze(1)), to_s(k[i].unsqueeze(1)), to_s(v[i].unsqueeze(1)),
                                  steps[i], plain);
        EXPECT_TRUE(want.ok()) << want.status();
        if (!want.ok()) return r;
        const at::Tensor w = want->to(at::kCPU, at::kFloat), g = got_all[i].unsqueeze(1);
        EXPECT_FALSE(g.isnan().any().item<bool>()) << "row " << i << " layer " << l << " step " << d;
        r.worst = std::max(r.worst, ((g - w).norm() / w.norm().clamp_min(1e-12)).item<double>());
      }
    }
    for (int64_t i = 0; i < N; ++i) EXPECT_TRUE(a[i]->EndStep(steps[i], ctx).ok() && b[i]->EndStep(steps[i], ctx).ok());
  }
  for (int64_t i = 0; i < N; ++i) {
    r.grouped.push_back(a[i]->Report());
    r.single.push_back(b[i]->Report());
  }
  return r;
}

// The reports' counts agree row by row.
inline void ExpectSameCounts(const GroupRun& r) {
  ASSERT_EQ(r.grouped.size(), r.single.size());
  for (size_t i = 0; i < r.grouped.size(); ++i) {
    EXPECT_EQ(r.grouped[i].tokens_seen, r.single[i].tokens_seen) << "row " << i;
    for (const char* key : {"pages_selected_mean", "tokens_attended_mean", "read_fraction", "dense_fallback_steps"}) {
      EXPECT_DOUBLE_EQ(r.grouped[i].stats.at(key), r.single[i].stats.at(key)) << key << " row " << i;
    }
  }
}

}  // namespace kvstream::entmax_test
