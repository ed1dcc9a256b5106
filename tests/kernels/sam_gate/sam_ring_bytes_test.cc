// SAM-Gate ring sizes (sam_gate.md §3, §9 tests 2, 5, 7): row bytes, the
// seed's Qwen2.5-3B figure in compat mode (4608 KiB) and packed, the
// Llama-3-8B worked examples, the keep-count rounding, and bytes that do not
// depend on context length.
#include <gtest/gtest.h>

#include <cstdint>

#include "kernels/sam_gate/sam_ring.h"

namespace kvstream {
namespace {

// Sum over L identical layers of the K+V ring bytes.
int64_t ModelKvBytes(int layers, int kept, int capacity, int d, int bits, int gs) {
  return layers * SamRingKvBytes(kept, capacity, d, bits, gs);
}

TEST(SamRingBytes, RowBytesFollowTheSpecFormula) {
  EXPECT_EQ(SamRowBytes(128, 4, 32), 64 + 16);
  EXPECT_EQ(SamRowBytes(128, 8, 32), 128 + 16);
  EXPECT_EQ(SamRowBytes(128, 16, 32), 256);
  EXPECT_EQ(SamRowBytes(64, 4, 16), 32 + 16);
  EXPECT_EQ(SamRowBytes(64, 8, 64), 64 + 4);
  for (int d : {64, 128}) {
    for (int b : {4, 8, 16}) {
      for (int gs : {16, 32, 64, 128}) {
        if (gs > d) continue;
        EXPECT_EQ(SamRowBytes(d, b, gs) % 4, 0) << "rows keep 4-byte alignment";
      }
    }
  }
}

TEST(SamRingBytes, SeedQwenTransitionCompatIs4608KiB) {
  // L=36, Hk=2, d=128, every layer TRANSITION: trans_heads 0.75 -> 2 groups,
  // W = 128, S = 0; compat mode = 16-bit ring.
  const int kept = SamKeepCount(0.75, 2);
  ASSERT_EQ(kept, 2);
  EXPECT_EQ(ModelKvBytes(36, kept, 128, 128, 16, 32), 4718592);
  EXPECT_EQ(ModelKvBytes(36, kept, 128, 128, 16, 32), 4608 * 1024);
  // Packed int8 rows: 36 * 2 * 2 * 128 * 144.
  EXPECT_EQ(ModelKvBytes(36, kept, 128, 128, 8, 32), 2654208);
  EXPECT_EQ(SamRingMetaBytes(kept, 128), 4 * 128 + 4 * 2);
}

TEST(SamRingBytes, LlamaWorkedExamplesMatchSection3) {
  const int L = 32, Hk = 8, d = 128, gs = 32;
  EXPECT_EQ(ModelKvBytes(L, SamKeepCount(1.0, Hk), 128, d, 16, gs), 16ll << 20);  // OBSTRUCTED
  EXPECT_EQ(SamRingKvBytes(SamKeepCount(0.75, Hk), 128, d, 8, gs), 216 * 1024);  // TRANSITION
  EXPECT_EQ(ModelKvBytes(L, SamKeepCount(0.75, Hk), 128, d, 8, gs), 6912 * 1024);  // 6.75 MiB
  EXPECT_EQ(SamRingKvBytes(SamKeepCount(0.5, Hk), 64, d, 4, gs), 40 * 1024);      // FLAT
  EXPECT_EQ(ModelKvBytes(L, SamKeepCount(0.5, Hk), 64, d, 4, gs), 1280 * 1024);   // 1.25 MiB
}

TEST(SamRingBytes, KeepCountRoundsUpToWholeGroups) {
  EXPECT_EQ(SamKeepCount(0.5, 2), 1);
  EXPECT_EQ(SamKeepCount(0.75, 2), 2);
  EXPECT_EQ(SamKeepCount(0.5, 8), 4);
  EXPECT_EQ(SamKeepCount(0.75, 8), 6);
  EXPECT_EQ(SamKeepCount(1.0, 8), 8);
  EXPECT_EQ(SamKeepCount(0.01, 8), 1);   // at least one group
  EXPECT_EQ(SamKeepCount(0.375, 8), 3);  // exact product: the 1e-9 keeps it at 3
}

TEST(SamRingBytes, BytesDoNotDependOnContextLength) {
  // The ring is sized from (n_l, C, b) alone; the slots a T=100 and a
  // T=10000 prompt occupy are the same C.
  const int W = 64, S = 4, C = W + S;
  for (int64_t T : {100, 10000}) {
    int max_slot = -1;
    for (int64_t p = 0; p < T; ++p) {
      if (SamResident(p, T, S, W)) max_slot = std::max(max_slot, SamSlot(p, S, W));
    }
    EXPECT_EQ(max_slot, C - 1) << "T=" << T;
  }
  EXPECT_EQ(SamRingKvBytes(4, C, 128, 4, 32), 2 * 4 * C * 80);
}

}  // namespace
}  // namespace kvstream
