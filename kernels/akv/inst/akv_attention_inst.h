// Declarations of the per-(element type, head dim) attention launchers that
// the instantiation units in this folder define; akv_attention.cu dispatches.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/akv/akv_attention.h"

namespace kvstream::akv_attn_detail {

template <class T, int D>
cudaError_t LaunchAkvAttentionTyped(const AkvAttentionParams& p, cudaStream_t stream);

}  // namespace kvstream::akv_attn_detail
