// sam_kv_write / sam_ring_dequant kernels (sam_gate.md §4 step 5, §7).
// Work unit: a chunk of 16 channels (the smallest quant group). For packed
// rings the thread that holds the first chunk of a quant group quantizes the
// whole group (AKV's device quantizer, bit-exact with the twin's host math);
// for 16-bit rings every chunk is its own unit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/akv/akv_device.cuh"
#include "kernels/common/device_math.cuh"
#include "kernels/common/pdl.cuh"
#include "kernels/cuda_check.h"
#include "kernels/sam_gate/sam_ring_io.h"

namespace kvstream {
namespace sam_io_detail {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 16;  // channels per work unit = smallest gs

__device__ __forceinline__ uint16_t Bf16Bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
__device__ __forceinline__ float Bf16ToF(uint16_t b) { return __uint_as_float(static_cast<uint32_t>(b) << 16); }

// Code e of a packed little-end-first group of B-bit codes.
__device__ __forceinline__ uint32_t CodeAt(const uint8_t* codes, int e, int bits) {
  const int bit = e * bits;
  return (codes[bit >> 3] >> (bit & 7)) & ((1u << bits) - 1u);
}

struct WriteArgs {
  const void* k;
  const void* v;
  const int32_t* pos;
  const int32_t* row_seq;
  const int32_t* seq_len;
  const SamRingDesc* rings;
  int64_t stride_n;
  int num_rows, num_seqs, num_kv_heads, fake_quant_bits;
};

template <class T, int D>
__global__ void __launch_bounds__(kThreads) KvWriteKernel(WriteArgs a) {
  // Programmatic dependent of the RoPE / QKV kernel that made k and v; the
  // attention after it waits for this grid before reading the ring.
  PdlWaitForPrerequisite();
  PdlLaunchDependents();
  constexpr int kChunks = D / kChunk;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= static_cast<int64_t>(a.num_rows) * a.num_kv_heads * 2 * kChunks) return;
  const int chunk = static_cast<int>(item % kChunks);
  int64_t rest = item / kChunks;
  const int kv = static_cast<int>(rest % 2);
  rest /= 2;
  const int j = static_cast<int>(rest % a.num_kv_heads);
  const int i = static_cast<int>(rest / a.num_kv_heads);
  const int b = a.row_seq ? a.row_seq[i] : 0;
  if (b < 0 || b >= a.num_seqs) return;
  const SamRingDesc& r = a.rings[b];
  if (j >= r.num_kept) return;
  const int64_t p = a.pos[i];
  if (!SamResident(p, a.seq_len[b], r.sinks, r.window)) return;
  const int slot = SamSlot(p, r.sinks, r.window);
  const int bits = r.bits, gs = r.group_size, C = r.window + r.sinks;
  const int g = r.kept_groups[j];
  const T* src = static_cast<const T*>(kv == 0 ? a.k : a.v) + i * a.stride_n + static_cast<int64_t>(g) * D;
  uint8_t* row = (kv == 0 ? r.k : r.v) + SamRowOffset(j, slot, C, SamRowBytes(D, bits, gs));
  const int c0 = chunk * kChunk;
  if (kv == 0 && j == 0 && chunk == 0) r.slot_pos[slot] = static_cast<int32_t>(p);

  if (bits == 16 && a.fake_quant_bits == 0) {
    uint16_t* out = reinterpret_cast<uint16_t*>(row) + c0;
#pragma unroll
    for (int c = 0; c < kChunk; ++c) out[c] = Bf16Bits(ToF(src[c0 + c]));
    return;
  }
  if (c0 % gs != 0) return;  // another thread owns this quant group
  const int grp = c0 / gs;
  if (bits < 16) {
    uint16_t* params = reinterpret_cast<uint16_t*>(row + SamCodeBytes(D, bits));
    akv_detail::QuantizeGroup(src + c0, gs, bits, row + c0 * bits / 8, &params[2 * grp], &params[2 * grp + 1]);
    return;
  }
  // Compat mode: quantize at fake_quant_bits, dequantize, store bf16(x^).
  uint32_t words[128 * 8 / 32];
  uint16_t sc_bits = 0, mn_bits = 0;
  const int fb = a.fake_quant_bits;
  akv_detail::QuantizeGroup(src + c0, gs, fb, reinterpret_cast<uint8_t*>(words), &sc_bits, &mn_bits);
  const float sc = akv_detail::HalfBitsToF(sc_bits), mn = akv_detail::HalfBitsToF(mn_bits);
  uint16_t* out = reinterpret_cast<uint16_t*>(row) + c0;
  for (int e = 0; e < gs; ++e) {
    const uint32_t code = CodeAt(reinterpret_cast<const uint8_t*>(words), e, fb);
    out[e] = Bf16Bits(akv_detail::Dequant(code, sc, mn));
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) RingDequantKernel(SamRingDesc r, float* k_out, float* v_out) {
  constexpr int kChunks = D / kChunk;
  const int C = r.window + r.sinks;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= static_cast<int64_t>(r.num_kept) * C * 2 * kChunks) return;
  const int chunk = static_cast<int>(item % kChunks);
  int64_t rest = item / kChunks;
  const int kv = static_cast<int>(rest % 2);
  rest /= 2;
  const int s = static_cast<int>(rest % C);
  const int j = static_cast<int>(rest / C);
  const int c0 = chunk * kChunk;
  float* out = (kv == 0 ? k_out : v_out) + (static_cast<int64_t>(j) * C + s) * D + c0;
  if (r.slot_pos[s] < 0) {
#pragma unroll
    for (int c = 0; c < kChunk; ++c) out[c] = 0.0f;
    return;
  }
  const uint8_t* row = (kv == 0 ? r.k : r.v) + SamRowOffset(j, s, C, SamRowBytes(D, r.bits, r.group_size));
  if (r.bits == 16) {
    const uint16_t* in = reinterpret_cast<const uint16_t*>(row) + c0;
#pragma unroll
    for (int c = 0; c < kChunk; ++c) out[c] = Bf16ToF(in[c]);
    return;
  }
  const uint16_t* params = reinterpret_cast<const uint16_t*>(row + SamCodeBytes(D, r.bits));
  const int grp = c0 / r.group_size;
  const float sc = akv_detail::HalfBitsToF(params[2 * grp]), mn = akv_detail::HalfBitsToF(params[2 * grp + 1]);
#pragma unroll
  for (int c = 0; c < kChunk; ++c) out[c] = akv_detail::Dequant(CodeAt(row, c0 + c, r.bits), sc, mn);
}

unsigned Blocks(int64_t items) { return static_cast<unsigned>((items + kThreads - 1) / kThreads); }

template <class T, int D>
cudaError_t RunWrite(const SamKvWriteParams& p, cudaStream_t stream) {
  WriteArgs a{p.k, p.v, p.pos, p.row_seq, p.seq_len, p.rings,
              p.stride_n ? p.stride_n : static_cast<int64_t>(p.num_kv_heads) * D,
              p.num_rows, p.num_seqs, p.num_kv_heads, p.fake_quant_bits};
  const int64_t items = static_cast<int64_t>(p.num_rows) * p.num_kv_heads * 2 * (D / kChunk);
  return LaunchPdl(KvWriteKernel<T, D>, dim3(Blocks(items)), dim3(kThreads), 0, stream, a);
}

template <class T>
cudaError_t RunWriteD(const SamKvWriteParams& p, cudaStream_t stream) {
  switch (p.head_dim) {
    case 64: return RunWrite<T, 64>(p, stream);
    case 128: return RunWrite<T, 128>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace
}  // namespace sam_io_detail

cudaError_t LaunchSamKvWrite(const SamKvWriteParams& p, cudaStream_t stream) {
  using namespace sam_io_detail;
  if (SamKvWriteValidate(p) != nullptr) return cudaErrorInvalidValue;
  if (p.num_rows == 0) return cudaSuccess;
  switch (p.dtype) {
    case KvDType::kBf16: return RunWriteD<__nv_bfloat16>(p, stream);
    case KvDType::kFp16: return RunWriteD<__half>(p, stream);
    case KvDType::kFp32: return RunWriteD<float>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchSamRingDequant(const SamRingDequantParams& p, cudaStream_t stream) {
  using namespace sam_io_detail;
  if (SamRingDequantValidate(p) != nullptr) return cudaErrorInvalidValue;
  const int64_t items = static_cast<int64_t>(p.ring.num_kept) * p.ring.Capacity() * 2 * (p.head_dim / kChunk);
  switch (p.head_dim) {
    case 64: RingDequantKernel<64><<<Blocks(items), kThreads, 0, stream>>>(p.ring, p.k_out, p.v_out); break;
    case 128: RingDequantKernel<128><<<Blocks(items), kThreads, 0, stream>>>(p.ring, p.k_out, p.v_out); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace kvstream
