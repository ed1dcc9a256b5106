// Block layouts follow ggml (ggml-common.h); gguf-py's quants.py is the
// oracle the tests compare against. NOTE(loader): every product below is
// exact in fp32: an fp16 scale has at most 11 significant bits, a sub-scale
// (6-bit or int8) at most 7 more and a quant at most 6 more, so no product
// needs more than fp32's 24 bits, and fp16's range sits well inside fp32's.
// Each output element thus takes at most one rounding, in the `a * q - b` /
// `a * q + b` order numpy uses, and matches gguf.quants.dequantize bit for
// bit whether or not the compiler contracts into FMA.
#include <array>
#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/model/loader/ggml_types.h"

namespace kvstream::loader {
namespace {

constexpr int64_t kQK = 32;    // block size of the legacy quants
constexpr int64_t kQK_K = 256;  // super-block size of the k-quants

uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

void DequantF32(const uint8_t* src, int64_t n, float* dst) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void DequantF16(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(Le16(src + 2 * i));
}

void DequantBF16(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(Le16(src + 2 * i));
}

// block_q8_0 (34 bytes): f16 d; int8 qs[32]. x = qs * d.
void DequantQ8_0(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += kQK) {
    const float d = HalfToFloat(Le16(src));
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(static_cast<int8_t>(src[2 + j])) * d;
  }
}

// block_q4_0 (18 bytes): f16 d; u8 qs[16]. Element j < 16 is the low nibble
// of qs[j], element j + 16 its high nibble; x = d * (nibble - 8).
void DequantQ4_0(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 18, dst += kQK) {
    const float d = HalfToFloat(Le16(src));
    const uint8_t* qs = src + 2;
    for (int j = 0; j < kQK / 2; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
      dst[j + kQK / 2] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

// block_q4_1 (20 bytes): f16 d; f16 m; u8 qs[16]. x = d * nibble + m.
void DequantQ4_1(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 20, dst += kQK) {
    const float d = HalfToFloat(Le16(src));
    const float m = HalfToFloat(Le16(src + 2));
    const uint8_t* qs = src + 4;
    for (int j = 0; j < kQK / 2; ++j) {
      dst[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
      dst[j + kQK / 2] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

// block_q4_K (144 bytes): f16 d; f16 dmin; u8 scales[12]; u8 qs[128].
// Eight sub-blocks of 32, each with a 6-bit scale and 6-bit min packed in
// `scales`: bytes 0-3 hold scale 0-3 (low 6 bits), bytes 4-7 min 0-3, and
// bytes 8-11 the low 4 bits of scale/min 4-7 whose top 2 bits sit in the top
// bits of bytes 0-3 (scales) and 4-7 (mins).
void DequantQ4_K(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 144, dst += kQK_K) {
    const float d = HalfToFloat(Le16(src));
    const float dmin = HalfToFloat(Le16(src + 2));
    const uint8_t* sc = src + 4;
    const uint8_t* qs = src + 16;
    for (int s = 0; s < 8; ++s) {
      uint8_t scale, min;
      if (s < 4) {
        scale = sc[s] & 0x3F;
        min = sc[s + 4] & 0x3F;
      } else {
        scale = static_cast<uint8_t>((sc[s + 4] & 0x0F) | ((sc[s - 4] >> 6) << 4));
        min = static_cast<uint8_t>((sc[s + 4] >> 4) | ((sc[s] >> 6) << 4));
      }
      const float ds = d * static_cast<float>(scale);
      const float dm = dmin * static_cast<float>(min);
      // Sub-block s reads the 32 bytes of chunk s/2, low nibbles when s is even.
      const uint8_t* q = qs + 32 * (s / 2);
      const int shift = 4 * (s % 2);
      for (int l = 0; l < 32; ++l) {
        dst[32 * s + l] = ds * static_cast<float>((q[l] >> shift) & 0x0F) - dm;
      }
    }
  }
}

// block_q6_K (210 bytes): u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits);
// int8 scales[16] (one per 16 elements); f16 d. For element e of half
// c = e / 128: low bits are nibble (e % 128) / 64 of ql[64c + e % 64], high
// bits are bit pair (e % 128) / 32 of qh[32c + e % 32]; x = d * scale * (q - 32).
void DequantQ6_K(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 210, dst += kQK_K) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* scales = reinterpret_cast<const int8_t*>(src + 192);
    const float d = HalfToFloat(Le16(src + 208));
    for (int e = 0; e < kQK_K; ++e) {
      const int c = e / 128, r = e % 128;
      const int lo = (ql[64 * c + r % 64] >> (4 * (r / 64))) & 0x0F;
      const int hi = (qh[32 * c + r % 32] >> (2 * (r / 32))) & 0x03;
      const int q = (lo | (hi << 4)) - 32;
      dst[e] = (d * static_cast<float>(scales[e / 16])) * static_cast<float>(q);
    }
  }
}

// Indexed by type id. Geometry from ggml's type traits (gguf-py
// GGML_QUANT_SIZES); a removed id has block_size 0.
constexpr std::array<GgmlTypeTraits, kGgmlTypeCount> kTraits = {{
    {"F32", 1, 4, DequantF32},           // 0
    {"F16", 1, 2, DequantF16},           // 1
    {"Q4_0", 32, 18, DequantQ4_0},       // 2
    {"Q4_1", 32, 20, DequantQ4_1},       // 3
    {"", 0, 0, nullptr},                 // 4 (Q4_2, removed)
    {"", 0, 0, nullptr},                 // 5 (Q4_3, removed)
    {"Q5_0", 32, 22, nullptr},           // 6
    {"Q5_1", 32, 24, nullptr},           // 7
    {"Q8_0", 32, 34, DequantQ8_0},       // 8
    {"Q8_1", 32, 40, nullptr},           // 9
    {"Q2_K", 256, 84, nullptr},          // 10
    {"Q3_K", 256, 110, nullptr},         // 11
    {"Q4_K", 256, 144, DequantQ4_K},     // 12
    {"Q5_K", 256, 176, nullptr},         // 13
    {"Q6_K", 256, 210, DequantQ6_K},     // 14
    {"Q8_K", 256, 292, nullptr},         // 15
    {"IQ2_XXS", 256, 66, nullptr},       // 16
    {"IQ2_XS", 256, 74, nullptr},        // 17
    {"IQ3_XXS", 256, 98, nullptr},       // 18
    {"IQ1_S", 256, 50, nullptr},         // 19
    {"IQ4_NL", 32, 18, nullptr},         // 20
    {"IQ3_S", 256, 110, nullptr},        // 21
    {"IQ2_S", 256, 82, nullptr},         // 22
    {"IQ4_XS", 256, 136, nullptr},       // 23
    {"I8", 1, 1, nullptr},               // 24
    {"I16", 1, 2, nullptr},              // 25
    {"I32", 1, 4, nullptr},              // 26
    {"I64", 1, 8, nullptr},              // 27
    {"F64", 1, 8, nullptr},              // 28
    {"IQ1_M", 256, 56, nullptr},         // 29
    {"BF16", 1, 2, DequantBF16},         // 30
    {"", 0, 0, nullptr},                 // 31 (removed)
    {"", 0, 0, nullptr},                 // 32 (removed)
    {"", 0, 0, nullptr},                 // 33 (removed)
    {"TQ1_0", 256, 54, nullptr},         // 34
    {"TQ2_0", 256, 66, nullptr},         // 35
    {"", 0, 0, nullptr},                 // 36 (removed)
    {"", 0, 0, nullptr},                 // 37 (removed)
    {"", 0, 0, nullptr},                 // 38 (removed)
    {"MXFP4", 32, 17, nullptr},          // 39
    {"NVFP4", 64, 36, nullptr},          // 40
    {"Q1_0", 128, 18, nullptr},          // 41
}};
static_assert(kTraits.size() == kGgmlTypeCount, "add a kTraits row for every GgmlType id");
static_assert(kTraits[static_cast<uint32_t>(GgmlType::kQ1_0)].block_size == 128,
              "kTraits rows must sit at their type id");

}  // namespace

const GgmlTypeTraits* FindGgmlType(uint32_t id) {
  if (id >= kGgmlTypeCount || kTraits[id].block_size == 0) return nullptr;
  return &kTraits[id];
}

absl::Status DequantizeToF32(GgmlType type, std::span<const uint8_t> src, std::span<float> dst) {
  const GgmlTypeTraits* t = FindGgmlType(static_cast<uint32_t>(type));
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unknown ggml type id %u", static_cast<uint32_t>(type)));
  }
  if (t->dequant == nullptr) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "ggml type %s has no dequantizer (supported: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q4_K Q6_K)",
        t->name));
  }
  const int64_t n = static_cast<int64_t>(dst.size());
  if (n % t->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %d elements is not a multiple of the block size %d", t->name, n, t->block_size));
  }
  const int64_t n_blocks = n / t->block_size;
  // n_blocks * type_size <= n * 4 bytes, which fits since dst exists in memory.
  if (static_cast<uint64_t>(n_blocks) * static_cast<uint64_t>(t->type_size) != src.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %d elements need %d bytes, got %u", t->name, n, n_blocks * t->type_size, src.size()));
  }
  // The per-element functions (F32/F16/BF16) take an element count, which
  // equals the block count when block_size is 1.
  t->dequant(src.data(), n_blocks, dst.data());
  return absl::OkStatus();
}

}  // namespace kvstream::loader
