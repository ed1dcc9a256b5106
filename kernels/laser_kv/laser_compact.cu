// K8 laser_compact_kv on the GPU (laser_compact.h; laser_kv.md §4.3 step 6):
// every layer in one launch, one warp per (layer, KV head, kept row); the
// lanes copy the row in 16-byte words when every base and stride allows it,
// else in 2-byte words (all dtypes are multiples of 2 bytes). A pure copy, so
// the result is bit-identical to the twin.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/laser_kv/laser_compact.h"

namespace kvstream {
namespace laser_compact_detail {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Byte strides of the sources and the destination, resolved on the host.
struct Geometry {
  const char* k[kLaserMaxSegments];
  const char* v[kLaserMaxSegments];
  const int32_t* pos[kLaserMaxSegments];
  int len[kLaserMaxSegments];
  int64_t sl[kLaserMaxSegments], sh[kLaserMaxSegments], sj[kLaserMaxSegments];  // bytes
  int64_t ol, oh, oj;                                                              // bytes
  int row_bytes;
};

template <class U>
__global__ void __launch_bounds__(kThreads) CompactKernel(LaserCompactParams p, Geometry g) {
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int M = p.num_rows, Hkv = p.num_kv_heads;
  if (w >= static_cast<int64_t>(p.num_layers) * Hkv * M) return;
  const int i = static_cast<int>(w % M);
  const int head = static_cast<int>((w / M) % Hkv);
  const int l = static_cast<int>(w / (int64_t(M) * Hkv));
  int r = p.rows[i], s = 0;
  if (r >= g.len[0]) {
    r -= g.len[0], s = 1;
    if (r >= g.len[1]) r -= g.len[1], s = 2;
  }
  // Constant-index selects: a dynamic index into the by-value parameter
  // struct would copy it to local memory.
#define KV_LASER_PICK(a) (s == 0 ? (a)[0] : s == 1 ? (a)[1] : (a)[2])
  const int64_t src = l * KV_LASER_PICK(g.sl) + head * KV_LASER_PICK(g.sh) + r * KV_LASER_PICK(g.sj);
  const int64_t dst = l * g.ol + head * g.oh + i * g.oj;
  const U* ks = reinterpret_cast<const U*>(KV_LASER_PICK(g.k) + src);
  const U* vs = reinterpret_cast<const U*>(KV_LASER_PICK(g.v) + src);
  const int32_t* pos = KV_LASER_PICK(g.pos);
#undef KV_LASER_PICK
  U* kd = reinterpret_cast<U*>(static_cast<char*>(p.k_out) + dst);
  U* vd = reinterpret_cast<U*>(static_cast<char*>(p.v_out) + dst);
  const int n = g.row_bytes / static_cast<int>(sizeof(U));
  for (int x = lane; x < n; x += 32) {
    kd[x] = ks[x];
    vd[x] = vs[x];
  }
  if (l == 0 && head == 0 && lane == 0 && p.pos_out) p.pos_out[i] = pos[r];
}

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

}  // namespace
}  // namespace laser_compact_detail

cudaError_t LaunchLaserCompact(const LaserCompactParams& p, cudaStream_t stream) {
  using namespace laser_compact_detail;
  if (LaserCompactValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_rows == 0) return cudaSuccess;
  const int64_t esz = static_cast<int64_t>(KvDTypeSize(p.dtype));
  const int Hkv = p.num_kv_heads, D = p.head_dim, M = p.num_rows;
  Geometry g;
  bool vec = Aligned16(p.k_out) && Aligned16(p.v_out);
  for (int s = 0; s < kLaserMaxSegments; ++s) {
    const LaserSegStrides st = LaserStridesOf(p.seg[s], Hkv, D);
    g.k[s] = static_cast<const char*>(p.seg[s].k);
    g.v[s] = static_cast<const char*>(p.seg[s].v);
    g.pos[s] = p.seg[s].pos;
    g.len[s] = p.seg[s].len;
    g.sl[s] = st.l * esz, g.sh[s] = st.h * esz, g.sj[s] = st.j * esz;
    if (p.seg[s].len > 0)
      vec = vec && Aligned16(g.k[s]) && Aligned16(g.v[s]) && (g.sl[s] | g.sh[s] | g.sj[s]) % 16 == 0;
  }
  g.oj = (p.out_stride_j ? p.out_stride_j : D) * esz;
  g.oh = (p.out_stride_h ? p.out_stride_h : int64_t(M) * D) * esz;
  g.ol = (p.out_stride_l ? p.out_stride_l : int64_t(Hkv) * M * D) * esz;
  vec = vec && (g.ol | g.oh | g.oj) % 16 == 0;
  g.row_bytes = static_cast<int>(D * esz);
  const int64_t warps = int64_t(p.num_layers) * Hkv * M;
  const unsigned blocks = static_cast<unsigned>((warps + kWarps - 1) / kWarps);
  if (vec) {
    CompactKernel<uint4><<<blocks, kThreads, 0, stream>>>(p, g);
  } else {
    CompactKernel<uint16_t><<<blocks, kThreads, 0, stream>>>(p, g);
  }
  return cudaGetLastError();
}

}  // namespace kvstream
