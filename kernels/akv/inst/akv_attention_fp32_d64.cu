// Instantiation unit: AKV mixed attention for fp32 hot tier, head_dim 64.
#include "kernels/akv/akv_attention_launch.cuh"

KVSTREAM_INSTANTIATE_AKV_ATTENTION(float, 64)
