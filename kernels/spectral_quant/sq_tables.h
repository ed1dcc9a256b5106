// Unit Lloyd–Max tables U_1..U_8 for N(0, 1) and their midpoints
// (spectral_quant.md §4.2 step 5, §9 test 1). codebook(s) = s * U_w, so the
// engine builds these once per process and every plan shares them.
#pragma once

#include "kernels/spectral_quant/sq_layout.h"

namespace kvstream {

// The seed's procedure for one width w (1..8), in double:
//   c_i = -3.5 + 7 (i + 1/2) / 2^w;  at most 50 iterations of
//   boundaries = midpoints of c with outer edges -10.5 / +10.5,
//   c_i' = E[x | cell i] = (phi(a) - phi(b)) / (Phi(b) - Phi(a))  (closed form),
//   stop when max |c' - c| < 1e-6, keeping the PREVIOUS iterate c.
// Writes 2^w ascending centroids (double precision).
void SqLloydMaxUnit(int w, double* centroids);

// Fills `tables` [kSqTableFloats] in the layout of sq_layout.h: centroids
// (rounded to fp32) and midpoints (computed in double from the double
// centroids, then rounded to fp32). Deterministic, ~1 ms.
void SqBuildUnitTables(float* tables);

// Mean squared error of quantizing N(0, 1) with the ascending codebook c
// (2^w values, nearest-centroid cells), by closed-form Gaussian moments.
double SqUnitCodebookMse(const double* centroids, int w);

}  // namespace kvstream
