// CPU twin of akv_cold_append (the cold scan's promotions, akv.md §4 step 7):
// each layer takes the best-first prefix of its staged rows that keeps warm
// within min(warm_limit, C_warm), appends it bit for bit after the live warm
// rows with w = a = the row's score, leaves everything else untouched, and
// counts what it took; invalid parameters change nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "kernels/akv/akv.h"
#include "tests/kernels/akv/akv_problem.h"

namespace kvstream {
namespace {

using testing::AkvColdAppendStage;
using testing::AkvProblem;
using testing::AkvShape;
using testing::MakeAkvProblem;
using testing::MakeColdAppendStage;

AkvShape ThreeLayers() {
  AkvShape s;
  s.layers = 3, s.n_warm = 20, s.spare_warm = 12, s.bits = 2, s.head_dim = 128, s.group_size = 64;
  return s;
}

TEST(AkvColdAppend, TakesTheStagedPrefixThatFitsAndCountsIt) {
  const AkvShape s = ThreeLayers();
  AkvProblem pr = MakeAkvProblem(s, 5);
  const AkvProblem before = pr;
  // Layer 0 wants 8 with room for 5 (limit 25), layer 1 wants 3, layer 2 none.
  AkvColdAppendStage st = MakeColdAppendStage(MakeAkvProblem(s, 6), 8, {8, 3, 0}, 7);
  ASSERT_TRUE(AkvColdAppendRef(st.AppendInto(pr, /*warm_limit=*/25)));
  const int want[3] = {5, 3, 0};
  const AkvLayout& lay = pr.lay;
  const size_t cr = static_cast<size_t>(lay.num_kv_heads) * lay.CodeBytes();
  const size_t gr = static_cast<size_t>(lay.num_kv_heads) * lay.Groups();
  for (int l = 0; l < 3; ++l) {
    const int32_t* c = &pr.counts[l * kAkvCountSlots];
    EXPECT_EQ(c[kAkvNWarm], 20 + want[l]) << l;
    EXPECT_EQ(c[kAkvTotColdTaken], want[l]) << l;
    const size_t w0 = static_cast<size_t>(l) * lay.warm_capacity, s0 = static_cast<size_t>(l) * st.S;
    // Live rows untouched; the taken rows equal the stage's first rows.
    EXPECT_EQ(0, std::memcmp(&pr.warm_k[w0 * cr], &before.warm_k[w0 * cr], 20 * cr)) << l;
    for (int i = 0; i < want[l]; ++i) {
      const size_t w = w0 + 20 + i, g = s0 + i;
      EXPECT_EQ(0, std::memcmp(&pr.warm_k[w * cr], &st.k[g * cr], cr)) << l << " " << i;
      EXPECT_EQ(0, std::memcmp(&pr.warm_v[w * cr], &st.v[g * cr], cr)) << l << " " << i;
      EXPECT_EQ(0, std::memcmp(&pr.wks[w * gr], &st.ks[g * gr], gr * 2));
      EXPECT_EQ(0, std::memcmp(&pr.wkz[w * gr], &st.kz[g * gr], gr * 2));
      EXPECT_EQ(0, std::memcmp(&pr.wvs[w * gr], &st.vs[g * gr], gr * 2));
      EXPECT_EQ(0, std::memcmp(&pr.wvz[w * gr], &st.vz[g * gr], gr * 2));
      EXPECT_EQ(pr.warm_pos[w], st.pos[g]);
      EXPECT_EQ(pr.warm_score[w], st.score[g]);
      EXPECT_EQ(pr.warm_a[w], st.score[g]);
    }
    // The slot after the last one taken keeps its poison.
    const size_t next = w0 + 20 + want[l];
    EXPECT_EQ(pr.warm_pos[next], before.warm_pos[next]) << l;
    EXPECT_EQ(0, std::memcmp(&pr.warm_k[next * cr], &before.warm_k[next * cr], cr)) << l;
  }
  EXPECT_EQ(pr.hot_k, before.hot_k);
  EXPECT_EQ(pr.hot_pos, before.hot_pos);
}

TEST(AkvColdAppend, WarmCapacityBindsBeforeALargerLimit) {
  const AkvShape s = ThreeLayers();  // C_warm = 32
  AkvProblem pr = MakeAkvProblem(s, 8);
  AkvColdAppendStage st = MakeColdAppendStage(MakeAkvProblem(s, 9), 16, {16, 16, 16}, 10);
  ASSERT_TRUE(AkvColdAppendRef(st.AppendInto(pr, /*warm_limit=*/1000)));
  for (int l = 0; l < 3; ++l) EXPECT_EQ(pr.counts[l * kAkvCountSlots + kAkvNWarm], 32) << l;
}

TEST(AkvColdAppend, InvalidParamsAreRefusedAndChangeNothing) {
  const AkvShape s = ThreeLayers();
  AkvProblem pr = MakeAkvProblem(s, 11);
  const AkvProblem before = pr;
  AkvColdAppendStage st = MakeColdAppendStage(MakeAkvProblem(s, 12), 4, {4, 4, 4}, 13);
  AkvColdAppendParams p = st.AppendInto(pr, /*warm_limit=*/0);
  p.rows = nullptr;
  EXPECT_NE(AkvColdAppendValidate(p), nullptr);
  EXPECT_FALSE(AkvColdAppendRef(p));
  p.rows = st.rows.data(), p.warm_limit = -1;
  EXPECT_FALSE(AkvColdAppendRef(p));
  p.warm_limit = 30, p.stage.score = nullptr;
  EXPECT_FALSE(AkvColdAppendRef(p));
  EXPECT_EQ(pr.counts, before.counts);
  EXPECT_EQ(pr.warm_k, before.warm_k);
}

}  // namespace
}  // namespace kvstream
