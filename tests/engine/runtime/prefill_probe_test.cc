// The runner's prefill hook (laser_kv.md §6.2): SequenceCache::NextPrefill
// picks each prefill step's size and may add an ephemeral probe suffix of
// prompt tokens at their own positions. A test strategy that keeps dense K/V
// and asks for "block of b + probe of the last q prompt tokens at S.." checks:
//  * probe rows get their own positions through RoPE and see past + block +
//    earlier probe rows: in the last block they equal the real query pass;
//  * the probe is never kept and produces no token: greedy tokens and
//    logprobs equal a run with the same chunking and no probe;
//  * the runner counts only the kept tokens (decode continues at P).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <map>

#include "engine/kv/dense/dense_cache.h"
#include "tests/engine/engine_fixture.h"
#include "tests/engine/runtime/direct_runner.h"

namespace kvstream {
namespace {

constexpr int64_t kBlock = 8;
constexpr int64_t kQuery = 7;

// Contiguous per-layer K/V; prefill as blocks of kBlock up to S = P - kQuery
// (each with the query as a probe when `probe`), then the query.
class ProbeCache final : public SequenceCache {
 public:
  ProbeCache(const KvGeometry& g, bool probe) : g_(g), probe_(probe), k_(g.n_layers), v_(g.n_layers) {}

  std::optional<PrefillPlan> NextPrefill(int64_t done, int64_t P) const override {
    const int64_t S = P - kQuery;
    PrefillPlan p;
    if (done < S) {
      p.n_tokens = std::min(kBlock, S - done);
      if (probe_) {
        p.n_probe = kQuery;
        p.probe_start = S;
      }
    } else {
      p.n_tokens = P - done;
    }
    return p;
  }

  absl::StatusOr<at::Tensor> Forward(int64_t layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const SeqStep& seq, const StepContext&) override {
    const int64_t past = k_[layer].defined() ? k_[layer].size(1) : 0;
    if (seq.start_pos != past) return absl::InternalError("a step does not continue the cache");
    if (q.size(1) != seq.rows()) return absl::InternalError("rows != n_new + n_probe");
    at::Tensor keys = past > 0 ? at::cat({k_[layer], k}, 1) : k.clone();
    at::Tensor values = past > 0 ? at::cat({v_[layer], v}, 1) : v.clone();
    at::Tensor out = CausalGqaAttention(q, keys, values, past);
    k_[layer] = keys.narrow(1, 0, past + seq.n_new).clone();  // the probe is never kept
    v_[layer] = values.narrow(1, 0, past + seq.n_new).clone();
    if (seq.n_probe > 0) {
      probe_out[layer] = out.narrow(1, seq.n_new, seq.n_probe).clone();
      probe_starts.push_back(seq.probe_start_pos);
    } else if (seq.is_prompt && seq.last_prompt_chunk) {
      query_out[layer] = out.clone();
    }
    if (layer == 0) steps.push_back(seq);
    return out;
  }
  int64_t BytesHeld() const override { return 0; }
  CacheReport Report() const override {
    CacheReport r;
    r.tokens_held = k_[0].defined() ? k_[0].size(1) : 0;
    return r;
  }

  std::vector<SeqStep> steps;              // layer 0's view of every step
  std::vector<int64_t> probe_starts;
  std::map<int64_t, at::Tensor> probe_out;  // layer -> [H, q, D] of the latest probe
  std::map<int64_t, at::Tensor> query_out;  // layer -> [H, q, D] of the real query pass

 private:
  KvGeometry g_;
  bool probe_;
  std::vector<at::Tensor> k_, v_;
};

class ProbeStrategy final : public Strategy {
 public:
  ProbeStrategy(const KvGeometry& g, bool probe) : g_(g), probe_(probe) {}
  const char* name() const override { return "probe_test"; }
  absl::Status Validate(const StrategyConfig&) const override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<SequenceCache>> Open(const StrategyConfig&) override {
    auto c = std::make_unique<ProbeCache>(g_, probe_);
    last = c.get();
    return c;
  }
  int64_t PredictBytes(const StrategyConfig&, int64_t, int64_t) const override { return 0; }
  ProbeCache* last = nullptr;

 private:
  KvGeometry g_;
  bool probe_;
};

std::vector<int32_t> Prompt(const Tokenizer& tok) {
  return tok.Encode("The lighthouse keeper wrote in his log every night: the wind, the boats, the colour of the "
                    "sea at dusk. On the last page he wrote the name of",
                    true);
}

double MaxRelDiff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-6, b.abs().max().item<double>());
}

TEST(PrefillProbe, ProbeRowsMatchTheQueryPassAndAreNeverKept) {
  KV_REQUIRE_MODEL(engine);
  const std::vector<int32_t> prompt = Prompt(engine->tokenizer());
  const int64_t P = static_cast<int64_t>(prompt.size()), S = P - kQuery;
  ASSERT_GT(S, 2 * kBlock) << "prompt too short for 3 blocks";
  GenerateSpec spec = testing::GreedySpec(prompt, 6);

  ProbeStrategy with_probe(engine->model().geometry(), true);
  ProbeStrategy plain(engine->model().geometry(), false);
  std::vector<SeqStep> steps;
  int64_t held = -1;
  auto a = testing::RunDirect(*engine, with_probe, {spec}, [&](size_t, const SequenceCache& c) {
    const auto& pc = static_cast<const ProbeCache&>(c);
    steps = pc.steps;
    held = c.Report().tokens_held;
    // Last block: the probe (positions S..P-1, past = all S context tokens) is
    // the real query pass row for row, at every layer.
    for (const auto& [layer, out] : pc.probe_out) {
      ASSERT_TRUE(pc.query_out.count(layer));
      EXPECT_LT(MaxRelDiff(out, pc.query_out.at(layer)), 1e-4) << "layer " << layer;
    }
    for (int64_t s : pc.probe_starts) EXPECT_EQ(s, S);
  });
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = testing::RunDirect(*engine, plain, {spec});
  ASSERT_TRUE(b.ok()) << b.status();

  // Steps: ceil(S / b) blocks with the probe, then the query, then decode.
  const int64_t blocks = (S + kBlock - 1) / kBlock;
  ASSERT_GE(steps.size(), static_cast<size_t>(blocks + 1));
  for (int64_t i = 0; i < blocks; ++i) {
    EXPECT_EQ(steps[i].start_pos, i * kBlock);
    EXPECT_EQ(steps[i].n_new, std::min(kBlock, S - i * kBlock));
    EXPECT_EQ(steps[i].n_probe, kQuery);
    EXPECT_EQ(steps[i].probe_start_pos, S);
    EXPECT_FALSE(steps[i].last_prompt_chunk);
  }
  EXPECT_EQ(steps[blocks].start_pos, S);
  EXPECT_EQ(steps[blocks].n_new, kQuery);
  EXPECT_EQ(steps[blocks].n_probe, 0);
  EXPECT_TRUE(steps[blocks].last_prompt_chunk);
  EXPECT_EQ(steps[blocks + 1].start_pos, P);  // decode continues right after the prompt
  EXPECT_EQ(held, P + 6 - 1);                // the probe left nothing behind

  // Same chunking without the probe: the same tokens and logprobs.
  EXPECT_EQ((*a)[0].token_ids, (*b)[0].token_ids);
  ASSERT_EQ((*a)[0].logprobs.size(), (*b)[0].logprobs.size());
  for (size_t i = 0; i < (*a)[0].logprobs.size(); ++i) EXPECT_NEAR((*a)[0].logprobs[i], (*b)[0].logprobs[i], 1e-4);
  EXPECT_EQ((*a)[0].prompt_tokens, P);
}

TEST(PrefillProbe, StrategiesWithoutAPlanKeepTheEngineChunk) {
  // The default NextPrefill is nullopt: the runner falls back to
  // PrefillChunk() or the engine's prefill_chunk, with no probe.
  KvGeometry g;
  g.n_layers = 1;
  DenseSequenceCache dense(g, 0);
  EXPECT_FALSE(dense.NextPrefill(0, 100).has_value());
  SeqStep s{0, 5, true, false};
  EXPECT_EQ(s.n_probe, 0);
  EXPECT_EQ(s.rows(), 5);
}

}  // namespace
}  // namespace kvstream
