// sam_kv_write and sam_ring_dequant (sam_gate.md §4 step 5, decode step 2,
// §7): writing K/V rows into the rings (quantize + pack, 16-bit copy, or the
// compat-mode fake quantization) and reading a whole ring back as fp32 rows.
// Both are bit-exact between CUDA and the CPU twin. Legend: sam_ring.h.
//
// kv_write
//   k, v       [n, Hk, D] dtype; element (i, g, c) at i*stride_n + g*D + c
//   pos        [n] int32 absolute position of row i; < 0 = padding, skipped
//   row_seq    [n] int32 sequence (index into rings / seq_len) of row i;
//              nullptr = every row belongs to sequence 0 (one prefill)
//   seq_len    [B] int32 tokens the sequence has seen once this call's rows
//              are in (prefill: T; decode: t + 1). Rows that would not be
//              resident at that length (§4 step 5: not a sink, not among the
//              last W) are skipped, so a whole prompt can be passed at once
//              and no two rows of one call race for a slot.
//   rings      [B] SamRingDesc (device array for the launcher)
//   For each written row: every kept group j of rings[b] gets the row of KV
//   head kept_groups[j] at slot(p) of its k and v ring, and slot_pos[slot] = p.
//   fake_quant_bits (compat mode, packed_storage=false, prefill only): 0 = off;
//   4 or 8 with a 16-bit ring stores x^ (quantize at that width, dequantize,
//   round to bf16) instead of x.
//   b = 16 stores bf16(x) (nearest even): lossless for bf16 input; on CPU
//   (fp32 input) fp32 rounded to bf16 (README "SAM-Gate" decision).
//
// ring_dequant (tests, debugging, the CPU attention)
//   ring       one SamRingDesc (host struct; its pointers on the launch side)
//   k_out, v_out  [n_l, C, D] fp32: x^ of every slot; slots with
//              slot_pos < 0 are written as 0.
#pragma once

#include <cstdint>

#include "kernels/common/kv_dtype.h"
#include "kernels/sam_gate/sam_ring.h"

#if defined(__CUDACC__) || defined(KVSTREAM_HAVE_CUDA_RUNTIME)
#include <cuda_runtime_api.h>
#define KVSTREAM_SAM_HAS_LAUNCHER 1
#endif

namespace kvstream {

struct SamKvWriteParams {
  const void* k = nullptr;            // [n, Hk, D] dtype, row i at i * stride_n
  const void* v = nullptr;            // [n, Hk, D] dtype, row i at i * stride_n
  const int32_t* pos = nullptr;       // [n]
  const int32_t* row_seq = nullptr;   // [n] or nullptr (all rows -> sequence 0)
  const int32_t* seq_len = nullptr;   // [B]
  const SamRingDesc* rings = nullptr; // [B]
  int64_t stride_n = 0;               // elements between rows; 0 = Hk * D
  int num_rows = 0;                   // n
  int num_seqs = 0;                   // B
  int num_kv_heads = 0;               // Hk
  int head_dim = 0;                   // D: 64 or 128
  int fake_quant_bits = 0;            // 0, 4 or 8 (8/4 need 16-bit rings)
  KvDType dtype = KvDType::kBf16;     // of k and v
};

struct SamRingDequantParams {
  SamRingDesc ring;                   // pointers on the launch side
  float* k_out = nullptr;             // [n_l, C, D]
  float* v_out = nullptr;             // [n_l, C, D]
  int head_dim = 0;                   // D
};

// nullptr if valid, else a static message naming the bad field. The
// launcher cannot read the device descriptors, so rings[] is checked by the
// twins (SamRingDescValidate) and by the engine when it builds them.
const char* SamKvWriteValidate(const SamKvWriteParams& p);
const char* SamRingDequantValidate(const SamRingDequantParams& p);

// ---- host row codec (twins, tests, engine CPU path) -------------------------------------
// Encodes D values x (fp32) as one ring row of `bits` (fake_quant_bits as
// above: only with bits == 16).
void SamEncodeRowHost(const float* x, int head_dim, int bits, int group_size, int fake_quant_bits, uint8_t* row);
// Decodes one ring row into D fp32 values x^.
void SamDecodeRowHost(const uint8_t* row, int head_dim, int bits, int group_size, float* x);

// ---- CPU twins (host pointers; false and nothing written if invalid) --------------------
bool SamKvWriteRef(const SamKvWriteParams& p);
bool SamRingDequantRef(const SamRingDequantParams& p);

#if defined(KVSTREAM_SAM_HAS_LAUNCHER)
// One thread per (row, ring group, K or V, quant group). Never allocates or
// syncs; cudaErrorInvalidValue on invalid params, fp16 or a dtype/D not built.
cudaError_t LaunchSamKvWrite(const SamKvWriteParams& p, cudaStream_t stream);
// One thread per (ring group, slot, K or V, quant group).
cudaError_t LaunchSamRingDequant(const SamRingDequantParams& p, cudaStream_t stream);
#endif

}  // namespace kvstream
