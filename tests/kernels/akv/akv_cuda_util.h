// Device-side helpers of the AKV CUDA tests: skip without a device, upload an
// AkvProblem's tier buffers, download them back for bit-exact comparison.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/akv/akv.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/akv/akv_problem.h"

namespace kvstream::testing {

template <class T>
void Down(const T* d, std::vector<T>* v) {
  if (!v->empty()) cudaMemcpy(v->data(), d, v->size() * sizeof(T), cudaMemcpyDeviceToHost);
}

// Device copy of a problem's tiers, q and q_pos.
struct DeviceTiers {
  AkvTiers tiers;
  void* q = nullptr;
  int32_t* q_pos = nullptr;
};

inline DeviceTiers UploadTiers(const AkvProblem& pr, DeviceArena* a) {
  DeviceTiers d;
  d.tiers.hot_k = a->Up(pr.hot_k);
  d.tiers.hot_v = a->Up(pr.hot_v);
  d.tiers.hot_pos = a->Up(pr.hot_pos);
  d.tiers.hot_score = a->Up(pr.hot_score);
  d.tiers.warm_k = a->Up(pr.warm_k);
  d.tiers.warm_v = a->Up(pr.warm_v);
  d.tiers.warm_k_scale = a->Up(pr.wks);
  d.tiers.warm_k_zero = a->Up(pr.wkz);
  d.tiers.warm_v_scale = a->Up(pr.wvs);
  d.tiers.warm_v_zero = a->Up(pr.wvz);
  d.tiers.warm_pos = a->Up(pr.warm_pos);
  d.tiers.warm_score = a->Up(pr.warm_score);
  d.tiers.warm_a = a->Up(pr.warm_a);
  d.tiers.counts = a->Up(pr.counts);
  d.q = a->Up(pr.q);
  d.q_pos = a->Up(pr.q_pos);
  return d;
}

// Overwrites pr's tier buffers with the device ones (same sizes).
inline void DownloadTiers(const AkvTiers& t, AkvProblem* pr) {
  Down(static_cast<const uint8_t*>(t.hot_k), &pr->hot_k);
  Down(static_cast<const uint8_t*>(t.hot_v), &pr->hot_v);
  Down(t.hot_pos, &pr->hot_pos);
  Down(t.hot_score, &pr->hot_score);
  Down(t.warm_k, &pr->warm_k);
  Down(t.warm_v, &pr->warm_v);
  Down(t.warm_k_scale, &pr->wks);
  Down(t.warm_k_zero, &pr->wkz);
  Down(t.warm_v_scale, &pr->wvs);
  Down(t.warm_v_zero, &pr->wvz);
  Down(t.warm_pos, &pr->warm_pos);
  Down(t.warm_score, &pr->warm_score);
  Down(t.warm_a, &pr->warm_a);
  Down(t.counts, &pr->counts);
}

// Byte-wise equality of two float vectors (NaN payloads included).
inline bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](float x, float y) {
           return std::memcmp(&x, &y, 4) == 0;
         });
}

}  // namespace kvstream::testing
