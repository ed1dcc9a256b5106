// Host-side ring of one (sequence, layer) for the SAM-Gate kernel tests: owns
// the buffers a SamRingDesc points at (slot_pos starts at -1, code bytes are
// poisoned), plus random K/V/q generators.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "kernels/common/half_bits.h"
#include "kernels/sam_gate/sam_ring.h"

namespace kvstream::testing {

struct SamRingSpec {
  int num_heads = 8, num_kv_heads = 4, head_dim = 64;
  int bits = 4, group_size = 32, window = 16, sinks = 0;
  std::vector<int32_t> kept_groups = {0, 2};  // ascending KV heads
  SamDroppedHeadMode dropped_mode = SamDroppedHeadMode::kSelf;
};

struct SamTestRing {
  SamRingSpec spec;
  std::vector<uint8_t> k, v;
  std::vector<int32_t> slot_pos, kept_groups, head_ring_group;
  SamRingDesc desc;

  explicit SamTestRing(const SamRingSpec& s) : spec(s) {
    const int C = s.window + s.sinks, n = static_cast<int>(s.kept_groups.size());
    const int64_t bytes = int64_t(n) * C * SamRowBytes(s.head_dim, s.bits, s.group_size);
    k.assign(bytes, 0xA5);
    v.assign(bytes, 0x5A);
    slot_pos.assign(C, -1);
    kept_groups = s.kept_groups;
    const int G = s.num_heads / s.num_kv_heads;
    head_ring_group.assign(s.num_heads, -1);
    for (int h = 0; h < s.num_heads; ++h) {
      for (int j = 0; j < n; ++j) {
        if (kept_groups[j] == h / G) head_ring_group[h] = j;
      }
    }
    desc.k = k.data();
    desc.v = v.data();
    desc.slot_pos = slot_pos.data();
    desc.kept_groups = kept_groups.data();
    desc.head_ring_group = head_ring_group.data();
    desc.num_kept = n;
    desc.window = s.window;
    desc.sinks = s.sinks;
    desc.bits = s.bits;
    desc.group_size = s.group_size;
    desc.dropped_mode = s.dropped_mode;
  }
  SamTestRing(const SamTestRing&) = delete;
  SamTestRing& operator=(const SamTestRing&) = delete;
};

// n values ~ N(0, sigma) stored as `dtype` (bytes), with a few outliers.
inline std::vector<uint8_t> RandomValues(size_t n, KvDType dtype, std::mt19937* rng, float sigma = 1.0f) {
  std::vector<uint8_t> out(n * KvDTypeSize(dtype));
  std::normal_distribution<float> nd(0.0f, sigma);
  for (size_t i = 0; i < n; ++i) {
    float x = nd(*rng);
    if ((*rng)() % 97 == 0) x *= 8.0f;
    StoreFromFloat(out.data(), i, x, dtype);
  }
  return out;
}

}  // namespace kvstream::testing
