// The paged dense strategy (what the CUDA server runs) equals the contiguous
// dense strategy on the same inputs, on CPU through the decode kernel's twin:
// prompt chunks, batched decode rows mixed with prefill in one group, rows out
// of order, prepared (graph-style, padded) decode steps; and its pages are
// accounted, bounded and returned.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "engine/kv/dense/dense_cache.h"
#include "engine/kv/dense/paged_dense.h"

namespace kvstream {
namespace {

KvGeometry SmallGeometry() {
  KvGeometry g;
  g.n_layers = 2;
  g.n_heads = 6;
  g.n_kv_heads = 2;  // G = 3
  g.head_dim = 64;
  g.context_length = 1024;
  g.dtype = at::kFloat;
  return g;
}

StrategyConfig Config(int64_t max_tokens) {
  StrategyConfig c;
  c.strategy = "dense";
  c.max_tokens = max_tokens;
  return c;
}

// Runs one step for every (cache, n_new) of `plan` through `strategy`, rows
// in the given order, and returns the attention output of every layer.
struct Stepper {
  Strategy* strategy;
  std::vector<std::unique_ptr<SequenceCache>> caches;
  std::vector<int64_t> lengths;

  std::vector<at::Tensor> Step(const std::vector<int64_t>& n_new, const std::vector<size_t>& order,
                               const std::vector<at::Tensor>& q, const std::vector<at::Tensor>& k,
                               const std::vector<at::Tensor>& v, int64_t step, bool prepared = false,
                               int64_t padded = 0) {
    std::vector<SequenceCache*> seqs;
    std::vector<SeqStep> steps;
    std::vector<int64_t> offsets;
    int64_t row = 0;
    for (size_t i : order) {
      seqs.push_back(caches[i].get());
      steps.push_back(SeqStep{lengths[i], n_new[i], n_new[i] > 1, false});
      offsets.push_back(row);
      row += n_new[i];
    }
    if (prepared) {
      auto key = strategy->PrepareDecode(seqs, steps, padded, StepContext{step});
      EXPECT_TRUE(key.ok()) << key.status();
    }
    std::vector<at::Tensor> outs;
    for (size_t l = 0; l < q.size(); ++l) {
      GroupTensors t{q[l], k[l], v[l], at::full(q[l].sizes(), std::nan(""), q[l].options()), offsets};
      StepContext ctx{step, prepared};
      EXPECT_TRUE(strategy->ForwardGroup(static_cast<int64_t>(l), seqs, steps, t, ctx).ok());
      outs.push_back(t.out);
    }
    for (size_t j = 0; j < seqs.size(); ++j) EXPECT_TRUE(seqs[j]->EndStep(steps[j], StepContext{step}).ok());
    for (size_t i : order) lengths[i] += n_new[i];
    return outs;
  }
};

void ExpectClose(const at::Tensor& got, const at::Tensor& want, int64_t rows, const char* what) {
  const at::Tensor g = got.narrow(0, 0, rows), w = want.narrow(0, 0, rows);
  ASSERT_TRUE(at::isfinite(g).all().item<bool>()) << what << ": NaN poison left in the output";
  const double rel = (g - w).norm().item<double>() / w.norm().item<double>();
  EXPECT_LT(rel, 1e-5) << what;
}

TEST(PagedDense, EqualsContiguousDenseOverPrefillMixedAndPreparedDecode) {
  const KvGeometry g = SmallGeometry();
  PagedDenseStrategy paged(g, /*pool_bytes=*/64 * 2 * 2 * 2 * 16 * 64 * 4);
  DenseStrategy dense(g);
  Stepper a{&paged, {}, {}}, b{&dense, {}, {}};
  for (int i = 0; i < 3; ++i) {
    a.caches.push_back(*paged.Open(Config(400)));
    b.caches.push_back(*dense.Open(Config(400)));
    a.lengths.push_back(0);
    b.lengths.push_back(0);
  }
  at::manual_seed(20261123);
  auto random_step = [&](int64_t rows, std::vector<at::Tensor>* q, std::vector<at::Tensor>* k,
                         std::vector<at::Tensor>* v) {
    q->clear(), k->clear(), v->clear();
    for (int64_t l = 0; l < g.n_layers; ++l) {
      q->push_back(at::randn({rows, g.n_heads, g.head_dim}));
      k->push_back(at::randn({rows, g.n_kv_heads, g.head_dim}));
      v->push_back(at::randn({rows, g.n_kv_heads, g.head_dim}));
    }
  };
  std::vector<at::Tensor> q, k, v;
  int64_t step = 0;
  // Prompts of 37, 16 and 1 tokens (page boundary cases), one step together.
  std::vector<int64_t> n = {37, 16, 1};
  random_step(54, &q, &k, &v);
  auto pa = a.Step(n, {0, 1, 2}, q, k, v, step), pb = b.Step(n, {0, 1, 2}, q, k, v, step);
  for (size_t l = 0; l < pa.size(); ++l) ExpectClose(pa[l], pb[l], 54, "prefill");
  ++step;
  // Mixed group: sequence 1 takes a 20-token chunk while 0 and 2 decode, rows out of order.
  n = {1, 20, 1};
  random_step(22, &q, &k, &v);
  pa = a.Step(n, {2, 1, 0}, q, k, v, step), pb = b.Step(n, {2, 1, 0}, q, k, v, step);
  for (size_t l = 0; l < pa.size(); ++l) ExpectClose(pa[l], pb[l], 22, "mixed");
  ++step;
  // Decode steps across page boundaries, eager and prepared (padded to 4).
  for (int s = 0; s < 20; ++s, ++step) {
    n = {1, 1, 1};
    const bool prepared = s % 2 == 1;
    random_step(prepared ? 4 : 3, &q, &k, &v);
    pa = a.Step(n, {0, 1, 2}, q, k, v, step, prepared, 4);
    std::vector<at::Tensor> q3, k3, v3;
    for (int64_t l = 0; l < g.n_layers; ++l) {
      q3.push_back(q[l].narrow(0, 0, 3));
      k3.push_back(k[l].narrow(0, 0, 3));
      v3.push_back(v[l].narrow(0, 0, 3));
    }
    pb = b.Step(n, {0, 1, 2}, q3, k3, v3, step);
    for (size_t l = 0; l < pa.size(); ++l) ExpectClose(pa[l], pb[l], 3, prepared ? "prepared decode" : "decode");
    if (prepared) {  // the padding row attends to nothing: zeros
      for (size_t l = 0; l < pa.size(); ++l) EXPECT_EQ(pa[l][3].abs().max().item<float>(), 0.f);
    }
  }
  EXPECT_EQ(a.caches[0]->Report().tokens_seen, 37 + 1 + 20);
}

TEST(PagedDense, PagesAreCountedBoundedAndReturned) {
  const KvGeometry g = SmallGeometry();
  const int64_t page_bytes = 2 * g.n_layers * g.n_kv_heads * 16 * g.head_dim * 4;
  PagedDenseStrategy paged(g, 4 * page_bytes);  // 4 usable pages (+ the scratch page)
  EXPECT_EQ(paged.PredictBytes(Config(0), 17, 15), 2 * page_bytes);
  auto c1 = *paged.Open(Config(64));
  auto* p1 = static_cast<PagedDenseSequenceCache*>(c1.get());
  ASSERT_TRUE(p1->Grow(33).ok());
  EXPECT_EQ(c1->BytesHeld(), 3 * page_bytes);
  EXPECT_EQ(paged.pool().free_pages(), 1);
  for (int32_t page : p1->pages()) EXPECT_NE(page, PagedKvPool::kScratchPage);
  auto c2 = *paged.Open(Config(64));
  absl::Status full = static_cast<PagedDenseSequenceCache*>(c2.get())->Grow(40);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("3 pages wanted, 1 of 5 free"), std::string::npos) << full;
  c1.reset();
  EXPECT_EQ(paged.pool().free_pages(), 4) << "a finished sequence returns all its pages at once";
  EXPECT_TRUE(static_cast<PagedDenseSequenceCache*>(c2.get())->Grow(40).ok());
}

}  // namespace
}  // namespace kvstream
