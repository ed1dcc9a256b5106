// EntmaxKvStrategy::ForwardGroup (CPU, twins): the decode rows of a step that
// share a config go through one batched launch of each kernel, eagerly or as
// a prepared step (what the decode graphs capture); their outputs and reports
// must equal the per-sequence path's (SequenceCache::Forward) on the same K/V.
// The CUDA twin of these tests is in entmax_kv_cuda_test.cc.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "tests/engine/kv/entmax_kv/entmax_group_harness.h"

namespace kvstream {
namespace {

using entmax_test::ExpectSameCounts;
using entmax_test::GroupCfg;
using entmax_test::RunGroupVsSingle;

KvGeometry Geo() {
  KvGeometry g;
  g.n_layers = 3;
  g.n_heads = 8;
  g.n_kv_heads = 2;
  g.head_dim = 64;
  g.context_length = 2048;
  g.dtype = at::kFloat;
  g.kv_pool_bytes = int64_t{64} << 20;
  return g;
}

TEST(EntmaxKvGroup, BatchedDecodeEqualsPerSequenceDecode) {
  // Rows: 40 tokens (budget 64 covers the history: every page), 250 with
  // another budget (its own path, between the others: the batch's rows are
  // not contiguous), 300 and 517 (pages ranked); page boundaries crossed.
  const int64_t decode = 24;
  const auto r = RunGroupVsSingle(Geo(), Geo(), {40, 250, 300, 517}, {64, 128, 64, 64}, decode,
                                  /*prepared=*/false, 0, 11);
  EXPECT_LE(r.worst, 1e-5);
  ExpectSameCounts(r);
  ASSERT_EQ(r.grouped.size(), 4u);
  EXPECT_DOUBLE_EQ(r.grouped[0].stats.at("dense_fallback_steps"), static_cast<double>(decode * Geo().n_layers));
  EXPECT_LT(r.grouped[3].stats.at("read_fraction"), 0.6);
}

TEST(EntmaxKvGroup, PreparedDecodeEqualsPerSequenceDecode) {
  // 3 rows padded to 4; the longest crosses 1024 tokens (64 pages), so the
  // prepared table widens from 64 to 128 pages during the steps.
  const auto r = RunGroupVsSingle(Geo(), Geo(), {40, 300, 1010}, {64, 64, 64}, 20, /*prepared=*/true, 4, 12);
  EXPECT_LE(r.worst, 1e-5);
  ExpectSameCounts(r);
}

TEST(EntmaxKvGroup, PreparedDecodeEqualsPerSequenceDecodeAtEveryPageSize) {
  // Pages of 8, 32 and 64 tokens over the pool's 16-token blocks: the
  // prepared table (blocks) and the kernels' page rows differ in length.
  for (int64_t P : {8, 32, 64}) {
    const auto r = RunGroupVsSingle(Geo(), Geo(), {40, 300, 1010}, {4 * P, 4 * P, 4 * P}, 20, /*prepared=*/true, 4,
                                    30 + P, P);
    EXPECT_LE(r.worst, 1e-5) << "P " << P;
    ExpectSameCounts(r);
  }
}

TEST(EntmaxKvGroup, MixedConfigsAreNotPrepared) {
  const KvGeometry g = Geo();
  EntmaxKvStrategy s(g, g.kv_pool_bytes);
  auto a = s.Open(GroupCfg(64, 100)), b = s.Open(GroupCfg(64, 100)), c = s.Open(GroupCfg(128, 100));
  auto d = s.Open(GroupCfg(64, 100, /*page_size=*/32));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_TRUE(s.CanPrepareDecode({a->get(), b->get()}));
  EXPECT_FALSE(s.CanPrepareDecode({a->get(), b->get(), c->get()}));  // the model runs such a step eagerly
  EXPECT_FALSE(s.CanPrepareDecode({a->get(), d->get()}));            // same budget, other page size
}

}  // namespace
}  // namespace kvstream
