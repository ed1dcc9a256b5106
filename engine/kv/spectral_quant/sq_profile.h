// A SpectralQuant calibration profile (spectral_quant.md §3 "per model") and
// its file, `.sqcal` (§6.2, strategies/README.md): for every layer l < L, KV
// head h < Hkv and type t in {K=0, V=1} the eigenvalues lambda (descending,
// >= 0) and eigenvectors of the uncentered covariance of post-RoPE K / raw V
// (the spec's statistics), and [kvstream choice, issue 11] the mean mu of the
// vectors with the spectrum of the centred covariance C - mu mu^T, which the
// plans use with center_keys / center_values (sq_config.h).
//
// File layout, all little-endian, no padding:
//   header (48 B):
//     u8[8]  magic  "KVSQCAL\0"
//     u32    version            (= 2; version 1 files, without the means and
//                                centred spectra, are refused as stale:
//                                FailedPrecondition, recalibrate)
//     u32    header_bytes       (= 48)
//     u64    model_hash         (SqModelHash of the model file; 0 = synthetic)
//     u32    L, Hkv, D          (1..4096, 1..1024, 2..1024)
//     u32    reserved           (= 0)
//     u64    n_tokens           (tokens per layer the statistics saw)
//   then L*Hkv*2 blocks in (l, h, t) order, each 2*(D*4 + D*D*4 + 24) + D*4
//   bytes: a spectrum of the uncentred second moment, the mean f32[D], then a
//   spectrum of the centred covariance. A spectrum is:
//     f32[D]      lambda, descending
//     f32[D*D]    V column-major: V[c*D + r] = row r of eigenvector c
//                 (column c pairs with lambda_c; largest-|.| entry > 0, §6.3)
//     f32 participation_ratio  (sum lambda)^2 / sum lambda^2
//     u32 var_95, u32 var_99   fewest leading dims covering 95% / 99% energy
//     f32 spectral_gap         lambda_0 / lambda_1 (0 if lambda_1 == 0)
//     u64 n_samples            vectors accumulated for this (l, h, t)
// The file size must equal the header plus the blocks exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvstream {

inline constexpr char kSqcalMagic[8] = {'K', 'V', 'S', 'Q', 'C', 'A', 'L', '\0'};
inline constexpr uint32_t kSqcalVersion = 2;
inline constexpr uint32_t kSqcalHeaderBytes = 48;
inline constexpr uint32_t kSqcalMaxLayers = 4096;
inline constexpr uint32_t kSqcalMaxKvHeads = 1024;
inline constexpr uint32_t kSqcalMaxHeadDim = 1024;

struct SqSpectrum {
  std::vector<float> lambda;  // [D] descending, >= 0
  std::vector<float> vecs;    // [D*D] column-major (column c = eigenvector c)
  float participation_ratio = 0.0f;
  uint32_t var_95 = 0;
  uint32_t var_99 = 0;
  float spectral_gap = 0.0f;
  uint64_t n_samples = 0;
  std::vector<float> mean;    // [D] the vectors' mean: centred spectra only (empty = uncentred)
};

struct SqProfile {
  std::string name;            // file stem ("default" for default.sqcal)
  uint64_t model_hash = 0;
  int32_t n_layers = 0, n_kv_heads = 0, head_dim = 0;
  uint64_t n_tokens = 0;
  std::vector<SqSpectrum> spectra;   // [(l * Hkv + h) * 2 + t] uncentred second moment
  std::vector<SqSpectrum> centered;  // same index: covariance about `mean` (each has its mean)

  // Whether centred spectra exist (profiles read or calibrated always have
  // them; a profile assembled by hand may not, and is then used uncentred).
  bool has_centered() const { return !centered.empty() && centered.size() == spectra.size(); }
  const SqSpectrum& at(int64_t layer, int64_t head, int type, bool centred = false) const {
    return (centred ? centered : spectra)[(layer * n_kv_heads + head) * 2 + type];
  }
  SqSpectrum& at(int64_t layer, int64_t head, int type, bool centred = false) {
    return (centred ? centered : spectra)[(layer * n_kv_heads + head) * 2 + type];
  }
};

// Fills the diagnostics of `s` from its lambda (participation ratio, var_95,
// var_99, spectral gap); n_samples is left as is.
void SqFillDiagnostics(SqSpectrum& s);

// Serialises / parses the format above. Parse never reads outside `bytes`;
// each error names the field, the bad value and what was expected.
std::string SerializeSqcal(const SqProfile& p);
absl::StatusOr<SqProfile> ParseSqcal(const std::string& bytes, const std::string& name);

absl::Status WriteSqcal(const SqProfile& p, const std::string& path);
// The profile name is the file stem.
absl::StatusOr<SqProfile> ReadSqcal(const std::string& path);

// FNV-1a 64 over the file size (8 bytes LE) and the first 4 MiB of the file:
// the GGUF/safetensors header and tensor table identify the model without
// reading gigabytes at start.
absl::StatusOr<uint64_t> SqModelHash(const std::string& model_path);

}  // namespace kvstream
