// Per-row statistics of the logits a greedy step needs, in one pass: the
// maximum, its first index (torch.argmax's tie rule) and the log-sum-exp
// (the log-partition the logprobs are reported against). At decode sizes
// the ATen composition it replaces (logsumexp = max, abs, masked_fill,
// sub, exp, sum, log, add; then max) is ~13 launches and three
// device-to-host syncs per step over one 128K-wide row, ~0.2 ms of a ~6.5 ms
// Llama-3-8B step; this is one launch and one copy.
//
// Legend: B rows, V vocabulary.
//   logits      [B, V] dtype, row r at r * ld
//   out         [B] RowStats
//   next_token  [B] int64 or null: argmax written again as a token id, so a
//               decode graph feeds its greedy rows' tokens to the next step
//               on the device (engine/model/decode_graphs.h: run-ahead)
// Per row: max = max_v x_v; argmax = min { v : x_v == max };
//   lse = max + log(sum_v exp(x_v - max))   (fp32 on the GPU, fp64 in the twin)
// A row of -inf gives max = -inf, argmax = 0, lse = -inf. NaN entries are
// not maxima (x > m is false) but make lse NaN, as torch.logsumexp.
#pragma once

#include <cstdint>

#include "kernels/common/kv_dtype.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_ROW_STATS_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct RowStats {
  float max_logit = 0.0f;
  int32_t argmax = 0;
  float lse = 0.0f;
  int32_t pad = 0;  // 16 bytes: one vector store, one aligned copy
};
static_assert(sizeof(RowStats) == 16, "RowStats is copied to the host as raw bytes");

struct RowStatsParams {
  const void* logits = nullptr;  // [B, V] dtype
  RowStats* out = nullptr;       // [B]
  int64_t* next_token = nullptr; // [B] or null
  int64_t ld = 0;                // elements between rows; 0 = V
  int rows = 0;                  // B
  int vocab = 0;                 // V >= 1
  KvDType dtype = KvDType::kFp32;
};

// nullptr if valid, else a static message naming the bad field.
const char* RowStatsValidate(const RowStatsParams& p);

// CPU twin (host pointers): exact max/argmax, lse in fp64. False if invalid.
bool RowStatsRef(const RowStatsParams& p);

#if defined(KVSTREAM_ROW_STATS_HAS_LAUNCHER)
// One 1024-thread CTA per row. Never allocates or syncs;
// cudaErrorInvalidValue on invalid params.
cudaError_t LaunchRowStats(const RowStatsParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
