// K1 page_stats (entmax_kv.md §7, §3, §4 "Prefill" and decode step 1): per
// page, per KV head, per dim key statistics of the pages a step touched.
// Shapes and letters: entmax_kv_layout.h.
//
// Which pages: the last `recent_pages` pages [max(0, N - recent_pages), N) of
// every sequence, N from the live seq_lens on the device. recent_pages = 1 is
// the decode step (the tail holding the token just appended, recomputed from
// its present tokens); a prefill chunk of n tokens touches ceil(n/P) + 1;
// recent_pages >= MB recomputes everything (bulk after prefill). The grid is
// sized from recent_pages alone, so a captured graph replays as T grows.
//
// Statistics over the tokens present in the page (a partial tail included):
//   kMinMax:  kmin/kmax = exact min/max of the key values (dtype; no rounding)
//   kMeanStd: kmean = (sum x)/n, kstd = max(sqrt(sum (x - mean)^2 / n), 1e-6)
//             (two-pass population std, fp32, token order; §3 floor 1e-6)
#pragma once

#include "kernels/entmax_kv/entmax_kv_layout.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_ENTMAX_KV_HAS_LAUNCHER 1
#endif

namespace kvstream {

inline constexpr float kEntmaxStdFloor = 1e-6f;  // §3: population std floor

struct EntmaxPageStatsParams {
  EntmaxPagedKv kv;          // k_pool, block_table, seq_lens and sizes (v_pool unused)
  EntmaxStatsPools stats;    // the pair of `kind` is written at the touched pages' physical ids
  EntmaxStatKind kind = EntmaxStatKind::kMinMax;
  int recent_pages = 1;      // pages back from the end of each sequence, >= 1
};

const char* EntmaxPageStatsValidate(const EntmaxPageStatsParams& p);

// CPU twin: loops in the order stated above. False (nothing written) when the
// params are invalid or a page id to be read is outside [0, NB).
bool EntmaxPageStatsRef(const EntmaxPageStatsParams& p);

#if defined(KVSTREAM_ENTMAX_KV_HAS_LAUNCHER)
// Grid (recent_pages, Hkv, B), one thread per dim. Never allocates or syncs.
cudaError_t LaunchEntmaxPageStats(const EntmaxPageStatsParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
