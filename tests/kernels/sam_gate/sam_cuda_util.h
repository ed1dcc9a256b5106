// Device-side helpers of the SAM-Gate CUDA tests: an arena of device buffers,
// uploads/downloads, a device copy of a SamTestRing (same bytes, device
// pointers) and the relative-error norm used by every bound.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/sam_gate/sam_ring.h"
#include "tests/kernels/cuda_test_util.h"
#include "tests/kernels/sam_gate/sam_test_ring.h"

namespace kvstream::testing {

using SamDeviceArena = DeviceArena;  // tests/kernels/cuda_test_util.h

// Device copy of a host ring (same bytes); desc points at device memory.
struct SamDeviceRing {
  SamRingDesc desc;
  size_t bytes = 0, slots = 0;
};
inline SamDeviceRing UploadRing(const SamTestRing& r, SamDeviceArena* a) {
  SamDeviceRing d;
  d.desc = r.desc;
  d.desc.k = a->Up(r.k);
  d.desc.v = a->Up(r.v);
  d.desc.slot_pos = a->Up(r.slot_pos);
  d.desc.kept_groups = a->Up(r.kept_groups);
  d.desc.head_ring_group = a->Up(r.head_ring_group);
  d.bytes = r.k.size();
  d.slots = r.slot_pos.size();
  return d;
}

// ||got - want|| / ||want|| (0 when both are 0); NaN anywhere gives +inf.
inline double RelErr(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(want[i])) return INFINITY;
    num += std::pow(double(got[i]) - want[i], 2);
    den += double(want[i]) * want[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

}  // namespace kvstream::testing
