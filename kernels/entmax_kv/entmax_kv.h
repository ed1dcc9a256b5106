// EntmaxKV kernel family (design/strategies/entmax_kv.md §7): one include for
// the engine (engine/kv/entmax_kv/).
//   entmax_kv_layout.h         paged view, stats pools, page lists, shared page math
//   entmax_page_stats.h        K1 page_stats (min/max or mean/std per page)
//   entmax_topk.h              K2 page_criticality, K3 topk_pack
//   entmax_gauss.h             K4 gauss_stats, K5 tau_hat, K6 gauss_select_pack
//   entmax_sparse_decode.h     K7 sparse_decode (alpha 1, 1.5, 2; split-K)
//   entmax_math.h              host/device math shared by kernels and twins
#pragma once

#include "kernels/entmax_kv/entmax_gauss.h"
#include "kernels/entmax_kv/entmax_kv_layout.h"
#include "kernels/entmax_kv/entmax_page_stats.h"
#include "kernels/entmax_kv/entmax_sparse_decode.h"
#include "kernels/entmax_kv/entmax_topk.h"
