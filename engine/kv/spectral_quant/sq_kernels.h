// The boundary between SpectralQuant's tensors and its kernels: checks
// shapes, fills the Params of kernels/spectral_quant and calls the CPU twin
// (CPU tensors) or the launcher on the current stream (CUDA tensors).
#pragma once

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "engine/kv/kv_cache.h"
#include "engine/kv/spectral_quant/sq_device_plan.h"

namespace kvstream {

// Element type of K2's dense segment: bf16 on CUDA, fp32 on CPU.
c10::ScalarType SqDenseDtype(const KvGeometry& g);

struct SqCompressArgs {
  const at::Tensor* zk = nullptr;      // f32 [n, Hkv, D] key eigen coordinates
  const at::Tensor* zv = nullptr;      // f32 [n, Hkv, D]
  const SqLayerDevice* dev = nullptr;
  const at::Tensor* tables = nullptr;  // f32 [kSqTableFloats]
  at::Tensor* k_rec = nullptr;         // int32 [cap, Hkv, Wk]; rows [first, first + n) written
  at::Tensor* v_rec = nullptr;         // int32 [cap, Hkv, Wv]
  at::Tensor* r_norm = nullptr;        // int16 [cap, Hkv] (QJL) or null
  at::Tensor* signs = nullptr;         // int32 [cap, Hkv, SW] (QJL) or null
  int64_t first = 0;
  // Graph-replayed decode: int32 [1] on the device, the row the first token
  // goes to (first is then 0; K1's first_token).
  const at::Tensor* first_token = nullptr;
  int64_t n_kv_heads = 0, head_dim = 0;
};
// K1 for K (with QJL when r_norm/signs are set) and for V.
absl::Status SqRunCompress(const SqCompressArgs& a);

struct SqAttendArgs {
  const at::Tensor* q_rot = nullptr;     // f32 [H, n, D]
  const at::Tensor* q_sketch = nullptr;  // f32 [H, n, D] or null (QJL off)
  const at::Tensor* q_raw = nullptr;     // f32 [H, n, D]
  const SqLayerDevice* dev = nullptr;
  const at::Tensor* tables = nullptr;
  const at::Tensor* k_rec = nullptr;     // int32 [cap, Hkv, Wk] (first num_keys read)
  const at::Tensor* v_rec = nullptr;
  const at::Tensor* r_norm = nullptr;    // QJL only
  const at::Tensor* signs = nullptr;     // QJL only
  int64_t num_keys = 0;                  // Tk (with num_keys_live: the records' capacity)
  // Graph-replayed decode: int32 [1] on the device, the live Tk (K2's
  // num_keys_live); splits are then planned on num_keys.
  const at::Tensor* num_keys_live = nullptr;
  const at::Tensor* dense_k = nullptr;   // [Td, Hkv, D] SqDenseDtype, contiguous, or null
  const at::Tensor* dense_v = nullptr;
  const at::Tensor* q_pos = nullptr;     // int32 [n], or null: no causal mask (decode sees every key)
  const at::Tensor* d_pos = nullptr;     // int32 [Td] or null
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 0.0f;
};
struct SqAttendOut {
  at::Tensor a_eig;    // f32 [H, n, D]
  at::Tensor a_dense;  // f32 [H, n, D] or undefined (no dense segment)
};
absl::StatusOr<SqAttendOut> SqRunAttend(const SqAttendArgs& a);

// K3 twin on host copies: records int32 [>= n, Hkv, W] of type 0 (K) / 1 (V)
// -> Z^ f32 [n, Hkv, D] on the CPU.
absl::StatusOr<at::Tensor> SqRunDequantHost(const SqLayerDevice& dev, int type, const at::Tensor& records, int64_t n,
                                            int64_t n_kv_heads, int64_t head_dim);

}  // namespace kvstream
