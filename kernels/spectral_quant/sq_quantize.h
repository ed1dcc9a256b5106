// K1 sq_quantize_pack and K3 sq_dequant (spectral_quant.md §4.3, §7).
//
// K1, per token t < T and KV head h < Hkv (one warp each on the device):
//   u_i = z[t,h,i] / s_i;  code_i = #{m in M_{w_i} : m < u_i};  pack code_i at off_i
//   QJL (s_prime != nullptr, K only): z^_i = s_i U_{w_i}[code_i], e = z - z^,
//     r_norm[t,h] = fp16(||e||_2)  (= ||x - V_K z^||, V_K orthonormal),
//     sign bit m (m < d_eff[h]) of signs[t,h,:] = 1 iff (S'_h e)_m >= 0  (0 -> +1; bit m
//     in word m/32 at bit m%32; unused bits 0). A set bit means +1, a clear bit -1.
// K3, per token and head: zhat[t,h,i] = s_i * U_{w_i}[field_i(record)].
//
// Shapes (legend in sq_layout.h)
//   z        [T, Hkv, D] fp32 eigen coordinates (Z = X V_t, the engine's matmul);
//            element (t, h, i) at t * z_stride_t + h * D + i
//   tables   [kSqTableFloats] fp32 unit centroids + midpoints (sq_tables.h)
//   records  [T, Hkv, W] u32, W = plan.words; record (t, h) at (t * Hkv + h) * W
//            (rows shifted by *first_token when it is set)
//   s_prime  [Hkv, D, D] fp32: row m < d_eff[h] of head h is (S_sem V_K)_m (§4.2 step 6,
//            §4.3 step 2); rows >= d_eff are never read
//   r_norm   [T, Hkv] fp16 bits;   signs [T, Hkv, SW] u32
//   zhat     [T, Hkv, D] fp32 (K3 output, packed)
#pragma once

#include <cstdint>

#include "kernels/spectral_quant/sq_layout.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_SQ_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct SqQuantizePackParams {
  const float* z = nullptr;        // [T, Hkv, D] fp32 (row stride z_stride_t)
  int64_t z_stride_t = 0;          // elements between tokens; 0 = Hkv * D
  SqPlanView plan;                 // K or V plan of this layer
  const float* tables = nullptr;   // [kSqTableFloats]
  uint32_t* records = nullptr;     // [T, Hkv, W] out
  // QJL (keys with use_qjl only): all three set, or all null.
  const float* s_prime = nullptr;  // [Hkv, D, D] fp32 (needs plan.d_eff)
  uint16_t* r_norm = nullptr;      // [T, Hkv] fp16 out
  uint32_t* signs = nullptr;       // [T, Hkv, SW] out
  int sign_words = 0;              // SW >= ceil(max_h d_eff[h] / 32) when QJL is on
  int num_tokens = 0;              // T (0 is a no-op)
  int num_kv_heads = 0;            // Hkv
  int head_dim = 0;                // D: 64 or 128
  // Decode replayed from a CUDA graph: where token 0 goes, in device memory
  // (the twin reads it from host memory): token t is written to row
  // *first_token + t of records / r_norm / signs, which then point at row 0.
  // null = row t. The caller sizes the buffers for every value it stores.
  const int32_t* first_token = nullptr;
};

struct SqDequantParams {
  const uint32_t* records = nullptr;  // [T, Hkv, W]
  SqPlanView plan;
  const float* tables = nullptr;      // [kSqTableFloats]
  float* zhat = nullptr;              // [T, Hkv, D] fp32 out
  int num_tokens = 0;                 // T
  int num_kv_heads = 0;               // Hkv
  int head_dim = 0;                   // D: 64 or 128
};

// nullptr if valid, else a static message naming the bad field. Checks host-
// visible fields only (pointers non-null, sizes, W <= kSqMaxRecordWords + 1);
// the plan arrays' contents are the engine's contract (SqPlanView).
const char* SqQuantizePackValidate(const SqQuantizePackParams& p);
const char* SqDequantValidate(const SqDequantParams& p);

// CPU twins (fp32, the same u = z / s and midpoint rule as K1, so codes are
// bit-identical). Return false (nothing written) if invalid.
bool SqQuantizePackRef(const SqQuantizePackParams& p);
bool SqDequantRef(const SqDequantParams& p);

#if defined(KVSTREAM_SQ_HAS_LAUNCHER)
// K1: one warp per (token, head), tables in shared memory. Never allocates or
// syncs; cudaErrorInvalidValue on invalid params.
cudaError_t LaunchSqQuantizePack(const SqQuantizePackParams& p, cudaStream_t stream);
// K3: one warp per (token, head).
cudaError_t LaunchSqDequant(const SqDequantParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
