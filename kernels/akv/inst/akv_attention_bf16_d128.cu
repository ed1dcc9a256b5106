// Instantiation unit: AKV mixed attention for bf16 hot tier, head_dim 128.
#include "kernels/akv/akv_attention_launch.cuh"

KVSTREAM_INSTANTIATE_AKV_ATTENTION(__nv_bfloat16, 128)
