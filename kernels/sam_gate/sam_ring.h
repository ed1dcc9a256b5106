// SAM-Gate (design/strategies/sam_gate.md): the per-layer ring of one
// sequence, its row format and byte formulas, shared by every kernel of
// kernels/sam_gate/ and by the engine (engine/kv/sam_gate/).
//
// Legend (dimension letters used in every shape below)
//   B      sequences of one launch (a batch mixes regimes, C15)
//   H      query heads;  Hk  KV heads;  G = H / Hk query heads per KV head
//   D      head dim (64 or 128)
//   b      ring storage bits: 4, 8 (packed codes) or 16 (bf16)
//   gs     quant_group_size (16, 32, 64, 128; divides D);  Gn = D / gs
//   n_l    kept KV groups of the layer ("ring groups", §4 step 4)
//   S      num_sink_tokens;  W  window;  C = W + S  ring capacity (slots)
//   RB     row bytes = SamRowBytes(D, b, gs)
//   P      probe window;  K  num_probes
//
// Ring of one (sequence, layer) (§3):
//   k, v        [n_l, C, RB] bytes; ring group j holds KV head kept_groups[j]
//   slot_pos    [C] int32 absolute position held by the slot, -1 = empty
//               (the engine fills it with -1 when it allocates the ring)
//   kept_groups [n_l] int32, ascending KV heads
//   head_ring_group [H] int32: ring group j of query head h, -1 = dropped head
//
// Row format (one token, one ring group, K or V), RB bytes:
//   b in {4, 8}: [D*b/8 code bytes][Gn pairs (scale, min) of fp16 bits]
//                codes packed little-end first: b=4 channel 2i in the low
//                nibble of byte i (strategies/README.md "Quantization")
//   b = 16:      [D bf16 values]  (2*D bytes)
//   Every RB is a multiple of 4, so a 4-byte aligned ring keeps every row,
//   code word and (scale, min) pair aligned.
//
// Slot rule (§4 step 5, C10): slot(p) = p if p < S, else S + ((p - S) mod W).
// A position p of a sequence that has seen `len` tokens is resident iff
// p < S or p >= len - W; the resident slots are always [0, min(len, C)).
//
// Quantizer (§4 step 5 = README "Quantizer rule"): AKV's helper family
// (kernels/akv/akv_quant.h host math, kernels/akv/akv_device.cuh device math)
// is reused as is, so SAM-Gate codes equal AKV codes for the same group:
//   mn = fp16(min x), sc = fp16((max x - min x) / (2^b - 1))  (nearest even,
//   saturating at +-65504); code = sc == 0 ? 0 : clamp(rint((x - mn) / sc));
//   x^ = code * sc + mn in fp32 (the product is exact, so x^ is bit-identical
//   on GPU and CPU).
#pragma once

#include <cstdint>

#include "kernels/common/host_device.h"

namespace kvstream {

// dropped_head_mode (§5): output of a query head whose KV group is not kept.
enum class SamDroppedHeadMode : int32_t {
  kSelf = 1,  // o_h = v_t of KV head h / G, unquantized (C7)
  kZero = 2,  // o_h = 0
};

// Descriptor of one sequence's ring for the layer being launched (C15). The
// launchers take a device array of them, the twins a host array; the fields
// are fixed for the life of the request (regime, bits, window, kept groups).
struct SamRingDesc {
  uint8_t* k = nullptr;                     // [n_l, C, RB]
  uint8_t* v = nullptr;                     // [n_l, C, RB]
  int32_t* slot_pos = nullptr;              // [C], -1 = empty
  const int32_t* kept_groups = nullptr;     // [n_l] KV head of ring group j
  const int32_t* head_ring_group = nullptr; // [H] ring group of query head h, -1 = dropped
  int32_t num_kept = 0;                     // n_l (1..Hk)
  int32_t window = 0;                       // W (>= 1)
  int32_t sinks = 0;                        // S (>= 0)
  int32_t bits = 16;                        // b: 4, 8, 16
  int32_t group_size = 32;                  // gs (ignored for b = 16)
  SamDroppedHeadMode dropped_mode = SamDroppedHeadMode::kSelf;

  KV_HD int Capacity() const { return window + sinks; }  // C
};

// ---- row and ring sizes (§3) ---------------------------------------------------------
// row_bytes(b) = D*b/8 + (b < 16 ? 4*D/gs : 0); row_bytes(16) = 2*D.
KV_HD int SamRowBytes(int head_dim, int bits, int group_size) {
  return bits >= 16 ? 2 * head_dim : head_dim * bits / 8 + 4 * (head_dim / group_size);
}
KV_HD int SamCodeBytes(int head_dim, int bits) { return head_dim * bits / 8; }

// kv_bytes_l = 2 * n_l * C_l * row_bytes(b_l)   (K and V rings of one layer)
inline int64_t SamRingKvBytes(int num_kept, int capacity, int head_dim, int bits, int group_size) {
  return 2 * int64_t(num_kept) * capacity * SamRowBytes(head_dim, bits, group_size);
}
// meta_bytes_l = 4 * C_l + 4 * n_l   (slot_pos + kept_groups)
inline int64_t SamRingMetaBytes(int num_kept, int capacity) { return 4 * int64_t(capacity) + 4 * int64_t(num_kept); }

// n_keep = min(Hk, max(1, ceil(phi * Hk - 1e-9)))  (§4 step 4, C6)
int SamKeepCount(double heads_fraction, int num_kv_heads);

// ---- slot rule (§4 step 5) -------------------------------------------------------------
KV_HD int SamSlot(int64_t pos, int sinks, int window) {
  return pos < sinks ? static_cast<int>(pos) : sinks + static_cast<int>((pos - sinks) % window);
}
// True if position pos is kept once the sequence has seen len tokens.
KV_HD bool SamResident(int64_t pos, int64_t len, int sinks, int window) {
  return pos >= 0 && pos < len && (pos < sinks || pos >= len - window);
}

// Byte offset of (ring group j, slot s) inside a k or v ring.
KV_HD int64_t SamRowOffset(int group, int slot, int capacity, int row_bytes) {
  return (int64_t(group) * capacity + slot) * row_bytes;
}

// Checks of one descriptor against the launch (host side: twins and the
// engine): nullptr if valid, else a static message naming the field.
// Storage: pointers, n_l, W, S, b, gs, kept_groups (what kv_write needs).
const char* SamRingStorageValidate(const SamRingDesc& d, int num_kv_heads, int head_dim);
// Storage plus head_ring_group and dropped_mode (what the attention needs).
const char* SamRingDescValidate(const SamRingDesc& d, int num_heads, int num_kv_heads, int head_dim);

}  // namespace kvstream
