// Instantiation unit: dense decode attention for bf16 storage, head_dim 64.
#include "kernels/dense/dense_decode_launch.cuh"

KVSTREAM_INSTANTIATE_DENSE_DECODE(__nv_bfloat16, 64)
