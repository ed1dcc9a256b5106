// A plan in the kernels' layout (kernels/spectral_quant/sq_layout.h), on the
// serving device: per layer the flat [Hkv, D] width / scale / bit-offset
// arrays of K and V, the eigenbases used by the engine's rotations, and with
// QJL the S_sem / S' = S_sem V_K matrices (§4.2 step 6). Shared read-only by
// every sequence of the same (profile, knob tuple), like the profile, and so
// not counted in a sequence's kv_bytes_device (§8).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "engine/kv/spectral_quant/sq_plan.h"
#include "kernels/spectral_quant/spectral_quant.h"

namespace kvstream {

struct SqLayerDevice {
  at::Tensor k_width, v_width;  // uint8 [Hkv, D]
  at::Tensor k_scale, v_scale;  // f32 [Hkv, D]
  at::Tensor k_off, v_off;      // int16 holding u16 bit offsets [Hkv, D]
  at::Tensor k_deff, v_deff;    // int32 [Hkv]
  at::Tensor vk, vv;            // f32 [Hkv, D, D]: [h][r][c] = row r of eigenvector c
  at::Tensor s_sem;             // f32 [Hkv, D, D] QJL only: rows m < d_eff of S_sem, others 0
  at::Tensor s_prime;           // f32 [Hkv, D, D] QJL only: S_sem V_K (rows >= d_eff 0)
  at::Tensor mu_k, mu_v;        // f32 [Hkv, D] calibrated means, each only when that type is centred
  int words_k = 0, words_v = 0;
  int sign_words = 0;           // SW: ceil(max_h d_eff / 32) with QJL, else 0

  SqPlanView KView() const;
  SqPlanView VView() const;
  int64_t bytes() const;
};

struct SqDevicePlan {
  std::shared_ptr<const SqPlan> plan;
  std::vector<SqLayerDevice> layers;  // [L]
  at::Tensor tables;                  // f32 [kSqTableFloats] unit centroids + midpoints
  int64_t bytes() const;
};

// The unit tables of sq_tables.h on `device` (built once per process).
at::Tensor SqUnitTables(c10::Device device);

// S_sem of (layer, head): a D x D standard-normal matrix from a CPU generator
// seeded 42 + 1000 layer + head, rounded to fp16 as the seed stores it
// (§4.2 step 6), returned fp32 [D, D].
at::Tensor SqQjlMatrix(int64_t layer, int64_t head, int64_t D);

// One layer of `plan` (built from `p`) on `device`.
SqLayerDevice SqBuildLayerDevice(const SqPlan& plan, const SqProfile& p, int64_t layer, c10::Device device);
std::shared_ptr<const SqDevicePlan> SqBuildDevicePlan(std::shared_ptr<const SqPlan> plan, const SqProfile& p,
                                                      c10::Device device);

}  // namespace kvstream
