// SamGateStrategy's batched decode (PrepareDecode + ForwardGroup with
// decode_prepared, the path CUDA graphs replay) on the CPU twins: a group of
// sequences in different regimes (FLAT int4 with SELF / ZERO dropped heads,
// TRANSITION int8 with sinks, OBSTRUCTED 16-bit; C15) decoded together, with
// padded rows and strided q/k/v views of a fused projection, gives exactly
// the outputs each sequence gets alone through Forward; padded rows output 0
// and write nothing; the host bookkeeping advances once per step.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "engine/kv/sam_gate/sam_gate_strategy.h"
#include "kernels/sam_gate/sam_decode_attn.h"

namespace kvstream {
namespace {

KvGeometry Geo() {
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = 4;
  g.n_kv_heads = 2;
  g.head_dim = 64;
  g.context_length = 4096;
  g.dtype = at::kFloat;
  return g;
}

StrategyConfig Sam(std::map<std::string, KnobValue> knobs) {
  StrategyConfig c;
  c.strategy = "sam_gate";
  c.knobs = std::move(knobs);
  return c;
}

TEST(SamGateBatch, PreparedGroupDecodeEqualsEachSequenceAlone) {
  at::manual_seed(7);
  const KvGeometry g = Geo();
  const int64_t H = g.n_heads, Hk = g.n_kv_heads, D = g.head_dim, L = g.n_layers;
  const std::vector<StrategyConfig> cfgs = {
      // FLAT: int4, half the groups, SELF for the dropped heads.
      Sam({{"f_flat_max", 1e30}, {"f_obs_min", 1e30}, {"max_ctx_flat", int64_t{16}}}),
      // TRANSITION: int8, sinks.
      Sam({{"f_flat_max", 0.0}, {"f_obs_min", 1e30}, {"max_ctx_trans", int64_t{24}}, {"num_sink_tokens", int64_t{2}}}),
      // OBSTRUCTED: 16-bit, a small window.
      Sam({{"f_flat_max", 0.0}, {"f_obs_min", 0.0}, {"max_ctx_obs", int64_t{8}}}),
      // FLAT with ZERO dropped heads, 8-bit.
      Sam({{"f_flat_max", 1e30}, {"f_obs_min", 1e30}, {"flat_bits", int64_t{8}}, {"dropped_head_mode", std::string("ZERO")},
           {"max_ctx_flat", int64_t{12}}}),
  };
  const std::vector<int64_t> prompt = {20, 40, 9, 30};
  const int64_t B = static_cast<int64_t>(cfgs.size()), padded = 6;

  SamGateStrategy alone_s(g), group_s(g);
  std::vector<std::unique_ptr<SequenceCache>> alone, group;
  for (const auto& c : cfgs) {
    auto a = alone_s.Open(c);
    auto b = group_s.Open(c);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    alone.push_back(std::move(*a));
    group.push_back(std::move(*b));
  }
  // Prompts: the same tensors into both caches.
  for (int64_t i = 0; i < B; ++i) {
    const int64_t n = prompt[i];
    SeqStep st{0, n, true, true};
    for (int64_t l = 0; l < L; ++l) {
      at::Tensor q = at::randn({H, n, D}), k = at::randn({Hk, n, D}), v = at::randn({Hk, n, D});
      auto a = alone[i]->Forward(l, q, k, v, st, StepContext{});
      auto b = group[i]->Forward(l, q, k, v, st, StepContext{});
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
    }
  }
  // The regimes are the ones asked for.
  EXPECT_EQ(static_cast<SamGateSequenceCache*>(group[0].get())->plan(0).regime, SamRegime::kFlat);
  EXPECT_EQ(static_cast<SamGateSequenceCache*>(group[1].get())->plan(0).regime, SamRegime::kTransition);
  EXPECT_EQ(static_cast<SamGateSequenceCache*>(group[2].get())->plan(0).regime, SamRegime::kObstructed);
  EXPECT_EQ(static_cast<SamGateSequenceCache*>(group[3].get())->plan(0).kept.size(), 1u);

  std::vector<SequenceCache*> seqs;
  for (auto& c : group) seqs.push_back(c.get());
  double worst = 0.0;
  for (int step = 0; step < 40; ++step) {
    std::vector<SeqStep> steps;
    for (int64_t i = 0; i < B; ++i) steps.push_back(SeqStep{prompt[i] + step, 1, false, false});
    StepContext ctx;
    ctx.step = 100 + step;
    auto key = group_s.PrepareDecode(seqs, steps, padded, ctx);
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_EQ(*key % (kSamAttnMaxSplits + 1), 1) << "CPU: one split";
    ctx.decode_prepared = true;
    for (int64_t l = 0; l < L; ++l) {
      // q, k, v as views of one fused projection (row stride (H + 2 Hk) D).
      at::Tensor qkv = at::randn({padded, H + 2 * Hk, D});
      GroupTensors t;
      t.q = qkv.narrow(1, 0, H);
      t.k = qkv.narrow(1, H, Hk);
      t.v = qkv.narrow(1, H + Hk, Hk);
      t.out = at::full({padded, H, D}, NAN);
      for (int64_t i = 0; i < B; ++i) t.row_offset.push_back(i);
      ASSERT_TRUE(group_s.ForwardGroup(l, seqs, steps, t, ctx).ok());
      for (int64_t i = 0; i < B; ++i) {
        at::Tensor q = t.q[i].unsqueeze(1).contiguous();  // [H, 1, D]
        at::Tensor k = t.k[i].unsqueeze(1).contiguous();
        at::Tensor v = t.v[i].unsqueeze(1).contiguous();
        auto a = alone[i]->Forward(l, q, k, v, steps[i], StepContext{});
        ASSERT_TRUE(a.ok()) << a.status();
        const double d = (t.out[i] - a->squeeze(1)).abs().max().item<double>();
        worst = std::max(worst, d);
        ASSERT_LE(d, 1e-6) << "step " << step << " layer " << l << " seq " << i;
      }
      EXPECT_EQ(t.out.narrow(0, B, padded - B).abs().max().item<double>(), 0.0) << "padded rows";
    }
  }
  RecordProperty("max_abs_diff", std::to_string(worst));
  for (int64_t i = 0; i < B; ++i) {
    const CacheReport a = alone[i]->Report(), b = group[i]->Report();
    EXPECT_EQ(a.tokens_seen, b.tokens_seen) << i;
    EXPECT_EQ(a.tokens_held, b.tokens_held) << i;
    EXPECT_EQ(a.kv_bytes_device, b.kv_bytes_device) << i;
    auto* ga = static_cast<SamGateSequenceCache*>(alone[i].get());
    auto* gb = static_cast<SamGateSequenceCache*>(group[i].get());
    for (int64_t l = 0; l < L; ++l) EXPECT_EQ(ga->SlotPositions(l), gb->SlotPositions(l)) << i << " " << l;
  }
}

TEST(SamGateBatch, PrepareRefusesStepsThatDoNotFollowTheCache) {
  const KvGeometry g = Geo();
  SamGateStrategy s(g);
  auto c = s.Open(Sam({{"f_flat_max", 0.0}, {"f_obs_min", 0.0}}));
  ASSERT_TRUE(c.ok());
  SequenceCache* seq = c->get();
  std::vector<SequenceCache*> seqs = {seq};
  // Before the prompt: no ring.
  EXPECT_FALSE(s.PrepareDecode(seqs, std::vector<SeqStep>{{0, 1, false, false}}, 1, StepContext{}).ok());
  for (int64_t l = 0; l < g.n_layers; ++l) {
    ASSERT_TRUE(seq->Forward(l, at::randn({4, 12, 64}), at::randn({2, 12, 64}), at::randn({2, 12, 64}),
                             SeqStep{0, 12, true, true}, StepContext{})
                    .ok());
  }
  EXPECT_FALSE(s.PrepareDecode(seqs, std::vector<SeqStep>{{13, 1, false, false}}, 1, StepContext{}).ok());
  EXPECT_FALSE(s.PrepareDecode(seqs, std::vector<SeqStep>{{12, 1, false, false}}, 300, StepContext{}).ok());
  EXPECT_TRUE(s.PrepareDecode(seqs, std::vector<SeqStep>{{12, 1, false, false}}, 1, StepContext{}).ok());
  EXPECT_EQ(seq->Report().tokens_seen, 13);
  // A prepared step that was not prepared for this ctx.step is refused.
  GroupTensors t;
  t.q = at::randn({1, 4, 64});
  t.k = at::randn({1, 2, 64});
  t.v = at::randn({1, 2, 64});
  t.out = at::empty({1, 4, 64});
  t.row_offset = {0};
  StepContext other;
  other.step = 5;
  other.decode_prepared = true;
  EXPECT_FALSE(s.ForwardGroup(0, seqs, std::vector<SeqStep>{{12, 1, false, false}}, t, other).ok());
}

}  // namespace
}  // namespace kvstream
