// §9 test 1: the unit Lloyd–Max tables of the seed's procedure (50
// iterations, outer edges ±10.5, previous iterate kept), their symmetry,
// midpoints and unit-variance MSE.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/spectral_quant/sq_tables.h"

namespace kvstream {
namespace {

TEST(SqUnitTables, PositiveHalvesMatchSpecValues) {
  const std::vector<std::vector<double>> want = {
      {0.7979},
      {0.4528, 1.5104},
      {0.2453, 0.7567, 1.3448, 2.1528},
      {0.1433, 0.4317, 0.7263, 1.0331, 1.3620, 1.7313, 2.1810, 2.8326},
  };
  std::vector<float> t(kSqTableFloats);
  SqBuildUnitTables(t.data());
  for (int w = 1; w <= 4; ++w) {
    const int n = 1 << w;
    const float* c = t.data() + SqCentroidOffset(w);
    for (int i = 0; i < n / 2; ++i) {
      EXPECT_NEAR(c[n / 2 + i], want[w - 1][i], 1e-4) << "U" << w << " positive entry " << i;
      EXPECT_NEAR(c[n / 2 - 1 - i], -want[w - 1][i], 1e-4) << "U" << w << " negative entry " << i;
    }
  }
}

TEST(SqUnitTables, EveryWidthIsSymmetricAscendingWithMidpoints) {
  std::vector<float> t(kSqTableFloats);
  SqBuildUnitTables(t.data());
  for (int w = 1; w <= 8; ++w) {
    const int n = 1 << w;
    const float* c = t.data() + SqCentroidOffset(w);
    const float* m = t.data() + kSqCentroidFloats + SqMidpointOffset(w);
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(c[i], -c[n - 1 - i], 1e-6) << "U" << w << "[" << i << "]";
      if (i + 1 < n) {
        EXPECT_LT(c[i], c[i + 1]) << "U" << w;
        EXPECT_NEAR(m[i], 0.5 * (double(c[i]) + c[i + 1]), 1e-6) << "M" << w << "[" << i << "]";
      }
    }
  }
  // The last width's midpoints end exactly at the buffer's end.
  EXPECT_EQ(kSqCentroidFloats + SqMidpointOffset(8) + 255, kSqTableFloats);
  EXPECT_EQ(SqCentroidOffset(8) + 256, kSqCentroidFloats);
}

TEST(SqUnitTables, UnitVarianceMseMatchesSpec) {
  const double want[5] = {0.3634, 0.1175, 0.03455, 0.00969, 0.00309};
  double c[256];
  for (int w = 1; w <= 5; ++w) {
    SqLloydMaxUnit(w, c);
    const double mse = SqUnitCodebookMse(c, w);
    EXPECT_NEAR(mse, want[w - 1], want[w - 1] * 2e-3 + 1e-5) << "b=" << w;
  }
}

TEST(SqUnitTables, FiftyIterationsStopShortOfTextbookU4) {
  // §9 test 1: the seed's cap leaves U4's outer level at 2.8326, not 2.7326.
  double c[16];
  SqLloydMaxUnit(4, c);
  EXPECT_GT(std::fabs(c[15] - 2.7326), 0.05);
}

}  // namespace
}  // namespace kvstream
