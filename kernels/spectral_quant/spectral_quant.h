// SpectralQuant kernel family (design/strategies/spectral_quant.md §7): one
// include for the engine (engine/kv/spectral_quant/).
//   sq_layout.h    legend, SqPlanView (per-layer plan arrays), record format, table layout
//   sq_tables.h    unit Lloyd–Max tables U_1..U_8 + midpoints (§4.2 step 5)
//   sq_quantize.h  K1 sq_quantize_pack (+ QJL r_norm / signs), K3 sq_dequant
//   sq_attend.h    K2 sq_attend (split-K over packed records + dense segment)
// Every kernel has a CPU twin (*_ref.cpp, no CUDA) taking the same Params.
// Rotations (Z = X V_t, q' = V_K^T q, O = A_eig V_V^T + A_dense) and S' are the
// engine's matmuls, not kernels here.
#pragma once

#include "kernels/spectral_quant/sq_attend.h"
#include "kernels/spectral_quant/sq_layout.h"
#include "kernels/spectral_quant/sq_quantize.h"
#include "kernels/spectral_quant/sq_tables.h"
