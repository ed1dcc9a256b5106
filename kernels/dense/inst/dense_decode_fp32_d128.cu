// Instantiation unit: dense decode attention for fp32 storage, head_dim 128.
#include "kernels/dense/dense_decode_launch.cuh"

KVSTREAM_INSTANTIATE_DENSE_DECODE(float, 128)
