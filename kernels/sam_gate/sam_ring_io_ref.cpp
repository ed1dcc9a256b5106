// CPU twins of sam_kv_write / sam_ring_dequant, the host row codec and the
// ring checks (sam_gate.md §3, §4 step 5). The quantizer is AKV's host math
// (one shared helper family, strategies/README.md), so codes are bit-exact
// with the CUDA kernels, which use its device twin.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/akv/akv_quant.h"
#include "kernels/common/half_bits.h"
#include "kernels/sam_gate/sam_ring_io.h"

namespace kvstream {
namespace {

bool BitsOk(int b) { return b == 4 || b == 8 || b == 16; }
bool GroupOk(int gs, int d) { return (gs == 16 || gs == 32 || gs == 64 || gs == 128) && gs <= d && d % gs == 0; }

// Quantizes D values with AKV's group quantizer and lays them out as a row.
void EncodePacked(const float* x, int d, int bits, int gs, uint8_t* row) {
  uint8_t unpacked[128];
  uint16_t* params = reinterpret_cast<uint16_t*>(row + SamCodeBytes(d, bits));
  for (int grp = 0; grp < d / gs; ++grp) {
    uint16_t sc = 0, mn = 0;
    AkvQuantizeGroupHost(x + grp * gs, gs, bits, unpacked, &sc, &mn);
    AkvPackHost(unpacked, gs, bits, row + grp * gs * bits / 8);
    params[2 * grp] = sc;      // pair order (scale, min), sam_ring.h
    params[2 * grp + 1] = mn;
  }
}

}  // namespace

int SamKeepCount(double heads_fraction, int num_kv_heads) {
  const double want = std::ceil(heads_fraction * num_kv_heads - 1e-9);
  int n = want < 1.0 ? 1 : static_cast<int>(want);
  return n > num_kv_heads ? num_kv_heads : n;
}

const char* SamRingStorageValidate(const SamRingDesc& d, int num_kv_heads, int head_dim) {
  if (!d.k || !d.v || !d.slot_pos || !d.kept_groups) return "ring: k, v, slot_pos and kept_groups must be non-null";
  if (d.num_kept < 1 || d.num_kept > num_kv_heads) return "ring.num_kept must be in [1, num_kv_heads]";
  if (d.window < 1 || d.sinks < 0 || d.window > (1 << 20) || d.sinks > 64)
    return "ring: window must be in [1, 2^20] and sinks in [0, 64]";
  if (!BitsOk(d.bits)) return "ring.bits must be 4, 8 or 16";
  if (d.bits < 16 && !GroupOk(d.group_size, head_dim))
    return "ring.group_size must be 16, 32, 64 or 128 and divide head_dim";
  for (int j = 0; j < d.num_kept; ++j) {
    if (d.kept_groups[j] < 0 || d.kept_groups[j] >= num_kv_heads || (j > 0 && d.kept_groups[j] <= d.kept_groups[j - 1]))
      return "ring.kept_groups must be ascending KV heads in [0, num_kv_heads)";
  }
  return nullptr;
}

const char* SamRingDescValidate(const SamRingDesc& d, int num_heads, int num_kv_heads, int head_dim) {
  if (const char* e = SamRingStorageValidate(d, num_kv_heads, head_dim)) return e;
  if (!d.head_ring_group) return "ring.head_ring_group must be non-null";
  if (num_kv_heads < 1 || num_heads % num_kv_heads != 0) return "num_heads must be a multiple of num_kv_heads";
  if (d.dropped_mode != SamDroppedHeadMode::kSelf && d.dropped_mode != SamDroppedHeadMode::kZero)
    return "ring.dropped_mode must be kSelf or kZero";
  const int G = num_heads / num_kv_heads;
  for (int h = 0; h < num_heads; ++h) {
    const int j = d.head_ring_group[h];
    if (j < -1 || j >= d.num_kept || (j >= 0 && d.kept_groups[j] != h / G))
      return "ring.head_ring_group[h] must be -1 or the ring group holding KV head h / G";
  }
  return nullptr;
}

const char* SamKvWriteValidate(const SamKvWriteParams& p) {
  if (p.num_rows < 0 || p.num_seqs < 1) return "num_rows must be >= 0 and num_seqs >= 1";
  if (p.head_dim != 64 && p.head_dim != 128) return "head_dim must be 64 or 128";
  if (p.num_kv_heads < 1 || p.num_kv_heads > 128) return "num_kv_heads must be in [1, 128]";
  if (p.num_rows > 0 && (!p.k || !p.v || !p.pos || !p.seq_len || !p.rings))
    return "k, v, pos, seq_len and rings must be non-null";
  if (p.fake_quant_bits != 0 && p.fake_quant_bits != 4 && p.fake_quant_bits != 8)
    return "fake_quant_bits must be 0, 4 or 8";
  if (p.stride_n != 0 && p.stride_n < int64_t(p.num_kv_heads) * p.head_dim)
    return "stride_n must be 0 or >= num_kv_heads * head_dim";
  if (p.dtype != KvDType::kFp32 && p.dtype != KvDType::kFp16 && p.dtype != KvDType::kBf16)
    return "dtype must be fp32, fp16 or bf16";
  return nullptr;
}

const char* SamRingDequantValidate(const SamRingDequantParams& p) {
  if (p.head_dim != 64 && p.head_dim != 128) return "head_dim must be 64 or 128";
  if (!p.k_out || !p.v_out) return "k_out and v_out must be non-null";
  const SamRingDesc& d = p.ring;
  if (!d.k || !d.v || !d.slot_pos) return "ring: k, v and slot_pos must be non-null";
  if (d.num_kept < 1 || d.window < 1 || d.sinks < 0) return "ring: num_kept >= 1, window >= 1, sinks >= 0";
  if (!BitsOk(d.bits)) return "ring.bits must be 4, 8 or 16";
  if (d.bits < 16 && !GroupOk(d.group_size, p.head_dim))
    return "ring.group_size must be 16, 32, 64 or 128 and divide head_dim";
  return nullptr;
}

void SamEncodeRowHost(const float* x, int d, int bits, int gs, int fake_quant_bits, uint8_t* row) {
  if (bits < 16) {
    EncodePacked(x, d, bits, gs, row);
    return;
  }
  uint16_t* out = reinterpret_cast<uint16_t*>(row);
  if (fake_quant_bits == 0) {
    for (int c = 0; c < d; ++c) out[c] = FloatToBf16Bits(x[c]);
    return;
  }
  // Compat mode: x^ of a packed row at fake_quant_bits, rounded to bf16.
  std::vector<uint8_t> packed(SamRowBytes(d, fake_quant_bits, gs));
  std::vector<float> xh(d);
  EncodePacked(x, d, fake_quant_bits, gs, packed.data());
  SamDecodeRowHost(packed.data(), d, fake_quant_bits, gs, xh.data());
  for (int c = 0; c < d; ++c) out[c] = FloatToBf16Bits(xh[c]);
}

void SamDecodeRowHost(const uint8_t* row, int d, int bits, int gs, float* x) {
  if (bits >= 16) {
    const uint16_t* in = reinterpret_cast<const uint16_t*>(row);
    for (int c = 0; c < d; ++c) x[c] = Bf16BitsToFloat(in[c]);
    return;
  }
  const uint16_t* params = reinterpret_cast<const uint16_t*>(row + SamCodeBytes(d, bits));
  for (int c = 0; c < d; ++c) {
    const int grp = c / gs;
    const float sc = HalfBitsToFloat(params[2 * grp]), mn = HalfBitsToFloat(params[2 * grp + 1]);
    x[c] = static_cast<float>(AkvCodeAt(row, c, bits)) * sc + mn;  // product exact: same bits as fmaf
  }
}

bool SamKvWriteRef(const SamKvWriteParams& p) {
  if (SamKvWriteValidate(p) != nullptr) return false;
  const int D = p.head_dim, Hk = p.num_kv_heads;
  for (int b = 0; b < p.num_seqs && p.num_rows > 0; ++b) {
    if (SamRingStorageValidate(p.rings[b], Hk, D) != nullptr) return false;
    if (p.fake_quant_bits != 0 && p.rings[b].bits != 16) return false;
  }
  const int64_t stride = p.stride_n ? p.stride_n : int64_t(Hk) * D;
  std::vector<float> x(D);
  for (int i = 0; i < p.num_rows; ++i) {
    const int b = p.row_seq ? p.row_seq[i] : 0;
    if (b < 0 || b >= p.num_seqs) continue;
    const SamRingDesc& r = p.rings[b];
    const int64_t pos = p.pos[i];
    if (!SamResident(pos, p.seq_len[b], r.sinks, r.window)) continue;
    const int C = r.Capacity(), rb = SamRowBytes(D, r.bits, r.group_size);
    const int slot = SamSlot(pos, r.sinks, r.window);
    for (int j = 0; j < r.num_kept; ++j) {
      const int g = r.kept_groups[j];
      for (int kv = 0; kv < 2; ++kv) {
        const void* src = kv == 0 ? p.k : p.v;
        for (int c = 0; c < D; ++c) x[c] = LoadAsFloat(src, i * stride + int64_t(g) * D + c, p.dtype);
        uint8_t* ring = kv == 0 ? r.k : r.v;
        SamEncodeRowHost(x.data(), D, r.bits, r.group_size, p.fake_quant_bits,
                         ring + SamRowOffset(j, slot, C, rb));
      }
    }
    r.slot_pos[slot] = static_cast<int32_t>(pos);
  }
  return true;
}

bool SamRingDequantRef(const SamRingDequantParams& p) {
  if (SamRingDequantValidate(p) != nullptr) return false;
  const SamRingDesc& r = p.ring;
  const int D = p.head_dim, C = r.Capacity(), rb = SamRowBytes(D, r.bits, r.group_size);
  for (int j = 0; j < r.num_kept; ++j) {
    for (int s = 0; s < C; ++s) {
      const int64_t o = (int64_t(j) * C + s) * D;
      if (r.slot_pos[s] < 0) {
        std::memset(p.k_out + o, 0, sizeof(float) * D);
        std::memset(p.v_out + o, 0, sizeof(float) * D);
        continue;
      }
      SamDecodeRowHost(r.k + SamRowOffset(j, s, C, rb), D, r.bits, r.group_size, p.k_out + o);
      SamDecodeRowHost(r.v + SamRowOffset(j, s, C, rb), D, r.bits, r.group_size, p.v_out + o);
    }
  }
  return true;
}

}  // namespace kvstream
