// The paged-append twin writes each (row, head) to its slot and refuses a
// slot outside the pool without writing anything.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/dense/paged_append.h"

namespace kvstream {
namespace {

TEST(PagedAppendRef, ScattersRowsAndRejectsOutOfPoolSlots) {
  const int R = 2, Hkv = 2, D = 8;
  std::vector<float> k(R * Hkv * D), v(R * Hkv * D);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(i), v[i] = -static_cast<float>(i);
  std::vector<int64_t> slots = {5, 0, 3, 6};
  std::vector<float> kp(8 * D, -1.f), vp(8 * D, -1.f);
  PagedAppendParams p{k.data(), v.data(), slots.data(), kp.data(), vp.data(), 0, 8, R, Hkv, D, KvDType::kFp32};
  ASSERT_TRUE(PagedAppendRef(p));
  for (int i = 0; i < R * Hkv; ++i) {
    for (int d = 0; d < D; ++d) {
      EXPECT_EQ(kp[slots[i] * D + d], k[i * D + d]);
      EXPECT_EQ(vp[slots[i] * D + d], v[i * D + d]);
    }
  }
  EXPECT_EQ(kp[1 * D], -1.f) << "slot 1 untouched";
  slots[3] = 8;
  std::vector<float> before = kp;
  EXPECT_FALSE(PagedAppendRef(p));
  EXPECT_EQ(kp, before);
}

}  // namespace
}  // namespace kvstream
