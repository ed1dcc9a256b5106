// K8 laser_compact_kv (laser_kv.md §4.3 step 6, §7): gathers the kept rows of
// every layer from up to 3 source segments (C, T, block) into new K/V, out of
// place, plus their original positions. Bit-exact copies (any dtype).
// Legend and LaserSegment: laser_common.h.
//
//   for i < M, l < Ly, g < Hkv:  (s, j) = segment and row of rows[i]
//     k_out[l, g, i, :] = seg[s].k[l, g, j, :];  v_out likewise;  pos_out[i] = seg[s].pos[j]
// Output element (l, g, i, c) at l*out_stride_l + g*out_stride_h + i*out_stride_j + c;
// zero strides = contiguous [Ly, Hkv, M, D]. A destination with capacity > M
// (room for the query and decode tokens) sets out_stride_h = cap*D etc.
// NOTE(laser): out of place only: the destination must not overlap a source.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/laser_kv/laser_common.h"

namespace kvstream {

struct LaserCompactParams {
  LaserSegment seg[kLaserMaxSegments];  // k, v, pos of each used segment (len 0 = unused)
  const int32_t* rows = nullptr;    // [M] concatenated indices (laser_common.h), any order
  void* k_out = nullptr;            // [Ly, Hkv, M, D] dtype (strided)
  void* v_out = nullptr;            // [Ly, Hkv, M, D] dtype (strided)
  int32_t* pos_out = nullptr;       // [M] int32, or nullptr (not wanted)
  int64_t out_stride_l = 0, out_stride_h = 0, out_stride_j = 0;  // elements; 0 = contiguous
  int num_rows = 0;                 // M (0 = nothing to do)
  int num_layers = 0;               // Ly >= 1 (1 = one layer per launch)
  int num_kv_heads = 0;             // Hkv
  int head_dim = 0;                 // D: 64 or 128
  KvDType dtype = KvDType::kBf16;   // of every segment and of the output
};

const char* LaserCompactValidate(const LaserCompactParams& p);

// CPU twin (host pointers; false and nothing written if invalid): memcpy of rows.
bool LaserCompactRef(const LaserCompactParams& p);

#if defined(KVSTREAM_LASER_HAS_LAUNCHER)
// All layers in one launch: one warp per (l, g, i) row, 16-byte copies when aligned.
cudaError_t LaunchLaserCompact(const LaserCompactParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
