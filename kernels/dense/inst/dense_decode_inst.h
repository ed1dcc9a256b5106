// Declarations of the per-(element type, head dim) launchers that the
// instantiation units in this folder define; dense_decode.cu dispatches to them.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/dense/dense_decode.h"

namespace kvstream::dense_decode_detail {

template <class T, int D>
cudaError_t LaunchDenseDecodeTyped(const DenseDecodeParams& p, cudaStream_t stream);

template <class T, int D>
cudaError_t DenseDecodeOccupancyTyped(int group, int* ctas_per_sm);

}  // namespace kvstream::dense_decode_detail
