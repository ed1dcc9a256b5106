#include "engine/kv/spectral_quant/sq_profile.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"

namespace kvstream {
namespace {

constexpr uint64_t kDiagBytes = 24;

// Little-endian appends (the build targets little-endian hosts; a static
// check below keeps a big-endian port from silently writing other files).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "sqcal I/O assumes a little-endian host");

template <typename T>
void Put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

// Bounded reader: every read checks the bytes left first.
class Reader {
 public:
  explicit Reader(const std::string& b) : b_(b) {}
  template <typename T>
  absl::Status Get(T* v, const char* what) {
    if (b_.size() - pos_ < sizeof(T)) {
      return absl::InvalidArgumentError(absl::StrCat("sqcal: truncated reading ", what, " at byte ", pos_, " (file has ",
                                                     b_.size(), " bytes)"));
    }
    std::memcpy(v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }
  absl::Status GetFloats(float* v, uint64_t n, const char* what) {
    if ((b_.size() - pos_) / sizeof(float) < n) {
      return absl::InvalidArgumentError(absl::StrCat("sqcal: truncated reading ", what, " (", n, " floats) at byte ",
                                                     pos_, " (file has ", b_.size(), " bytes)"));
    }
    std::memcpy(v, b_.data() + pos_, n * sizeof(float));
    pos_ += n * sizeof(float);
    return absl::OkStatus();
  }
  size_t pos() const { return pos_; }

 private:
  const std::string& b_;
  size_t pos_ = 0;
};

#define SQ_TRY(expr)                          \
  do {                                        \
    absl::Status sq_s_ = (expr);              \
    if (!sq_s_.ok()) return sq_s_;            \
  } while (0)

absl::Status CheckRange(const char* field, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(absl::StrCat("sqcal: ", field, " must be in [", lo, ", ", hi, "] (got ", v, ")"));
  }
  return absl::OkStatus();
}

uint64_t SpectrumBytes(uint64_t D) { return D * 4 + D * D * 4 + kDiagBytes; }
// One (l, h, t) block of version 2: uncentred spectrum, mean, centred spectrum.
uint64_t BlockBytes(uint64_t D) { return 2 * SpectrumBytes(D) + D * 4; }

void PutSpectrum(std::string& out, const SqSpectrum& s) {
  out.append(reinterpret_cast<const char*>(s.lambda.data()), s.lambda.size() * sizeof(float));
  out.append(reinterpret_cast<const char*>(s.vecs.data()), s.vecs.size() * sizeof(float));
  Put<float>(out, s.participation_ratio);
  Put<uint32_t>(out, s.var_95);
  Put<uint32_t>(out, s.var_99);
  Put<float>(out, s.spectral_gap);
  Put<uint64_t>(out, s.n_samples);
}

absl::Status GetSpectrum(Reader& r, SqSpectrum& s, uint32_t D, const std::string& where) {
  s.lambda.resize(D);
  s.vecs.resize(uint64_t{D} * D);
  SQ_TRY(r.GetFloats(s.lambda.data(), D, "lambda"));
  SQ_TRY(r.GetFloats(s.vecs.data(), uint64_t{D} * D, "eigenvectors"));
  SQ_TRY(r.Get(&s.participation_ratio, "participation_ratio"));
  SQ_TRY(r.Get(&s.var_95, "var_95"));
  SQ_TRY(r.Get(&s.var_99, "var_99"));
  SQ_TRY(r.Get(&s.spectral_gap, "spectral_gap"));
  SQ_TRY(r.Get(&s.n_samples, "n_samples"));
  for (uint32_t i = 0; i < D; ++i) {
    const float l0 = s.lambda[i];
    if (!std::isfinite(l0) || l0 < 0.0f || (i > 0 && l0 > s.lambda[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat("sqcal: lambda[", i, "] of ", where, " must be finite, >= 0 and <= ",
                                                     "lambda[i-1] (got ", l0, ")"));
    }
  }
  for (uint64_t i = 0; i < s.vecs.size(); ++i) {
    if (!std::isfinite(s.vecs[i])) {
      return absl::InvalidArgumentError(absl::StrCat("sqcal: eigenvector entry ", i, " of ", where, " is not finite"));
    }
  }
  SQ_TRY(CheckRange("var_95", s.var_95, 0, D));
  SQ_TRY(CheckRange("var_99", s.var_99, 0, D));
  if (s.n_samples < 2) {
    return absl::InvalidArgumentError(absl::StrCat("sqcal: n_samples of ", where, " must be >= 2 (got ", s.n_samples,
                                                   "): a missing table is a load error (§6.10)"));
  }
  return absl::OkStatus();
}

}  // namespace

void SqFillDiagnostics(SqSpectrum& s) {
  const size_t D = s.lambda.size();
  double sum = 0.0, sq = 0.0;
  for (float l : s.lambda) {
    sum += l;
    sq += static_cast<double>(l) * l;
  }
  s.participation_ratio = sq > 0.0 ? static_cast<float>(sum * sum / sq) : 0.0f;
  auto cover = [&](double frac) -> uint32_t {
    if (sum <= 0.0) return 0;
    double cum = 0.0;
    for (size_t i = 0; i < D; ++i) {
      cum += s.lambda[i];
      if (cum / sum >= frac) return static_cast<uint32_t>(i + 1);
    }
    return static_cast<uint32_t>(D);
  };
  s.var_95 = cover(0.95);
  s.var_99 = cover(0.99);
  s.spectral_gap = D >= 2 && s.lambda[1] > 0.0f ? s.lambda[0] / s.lambda[1] : 0.0f;
}

std::string SerializeSqcal(const SqProfile& p) {
  std::string out;
  const uint64_t D = static_cast<uint64_t>(p.head_dim);
  out.reserve(kSqcalHeaderBytes + p.spectra.size() * BlockBytes(D));
  out.append(kSqcalMagic, sizeof(kSqcalMagic));
  Put<uint32_t>(out, kSqcalVersion);
  Put<uint32_t>(out, kSqcalHeaderBytes);
  Put<uint64_t>(out, p.model_hash);
  Put<uint32_t>(out, static_cast<uint32_t>(p.n_layers));
  Put<uint32_t>(out, static_cast<uint32_t>(p.n_kv_heads));
  Put<uint32_t>(out, static_cast<uint32_t>(p.head_dim));
  Put<uint32_t>(out, 0);
  Put<uint64_t>(out, p.n_tokens);
  for (size_t i = 0; i < p.spectra.size(); ++i) {
    PutSpectrum(out, p.spectra[i]);
    // A profile without centred spectra (built by hand) writes its
    // uncentred one about a zero mean, which is the same statistics.
    const bool have = i < p.centered.size() && p.centered[i].mean.size() == D;
    const SqSpectrum& c = have ? p.centered[i] : p.spectra[i];
    const std::vector<float> zero(have ? 0 : D, 0.0f);
    const std::vector<float>& mean = have ? c.mean : zero;
    out.append(reinterpret_cast<const char*>(mean.data()), mean.size() * sizeof(float));
    PutSpectrum(out, c);
  }
  return out;
}

absl::StatusOr<SqProfile> ParseSqcal(const std::string& bytes, const std::string& name) {
  Reader r(bytes);
  char magic[8];
  for (char& c : magic) SQ_TRY(r.Get(&c, "magic"));
  if (std::memcmp(magic, kSqcalMagic, sizeof(magic)) != 0) {
    return absl::InvalidArgumentError("sqcal: bad magic (expected \"KVSQCAL\\0\"): not a .sqcal file");
  }
  uint32_t version = 0, header = 0, L = 0, H = 0, D = 0, reserved = 0;
  SqProfile p;
  p.name = name;
  SQ_TRY(r.Get(&version, "version"));
  if (version >= 1 && version < kSqcalVersion) {
    // FailedPrecondition (not InvalidArgument): the server skips such a file
    // and recalibrates; `kvstream calibrate --skip-existing` redoes it.
    return absl::FailedPreconditionError(absl::StrCat(
        "sqcal: version ", version, " is stale (this build reads version ", kSqcalVersion,
        ", which adds the key/value means and centred spectra); recalibrate with `kvstream calibrate`"));
  }
  if (version != kSqcalVersion) {
    return absl::InvalidArgumentError(absl::StrCat("sqcal: version must be ", kSqcalVersion, " (got ", version, ")"));
  }
  SQ_TRY(r.Get(&header, "header_bytes"));
  SQ_TRY(CheckRange("header_bytes", header, kSqcalHeaderBytes, kSqcalHeaderBytes));
  SQ_TRY(r.Get(&p.model_hash, "model_hash"));
  SQ_TRY(r.Get(&L, "L"));
  SQ_TRY(r.Get(&H, "Hkv"));
  SQ_TRY(r.Get(&D, "D"));
  SQ_TRY(r.Get(&reserved, "reserved"));
  SQ_TRY(r.Get(&p.n_tokens, "n_tokens"));
  SQ_TRY(CheckRange("L", L, 1, kSqcalMaxLayers));
  SQ_TRY(CheckRange("Hkv", H, 1, kSqcalMaxKvHeads));
  SQ_TRY(CheckRange("D", D, 2, kSqcalMaxHeadDim));
  SQ_TRY(CheckRange("reserved", reserved, 0, 0));
  // The caps keep every product below 2^63: 4096*1024*2*(2*(1024*4 + 1024^2*4 + 24) + 1024*4).
  const uint64_t block = BlockBytes(D);
  const uint64_t n_blocks = uint64_t{L} * H * 2;
  const uint64_t want = kSqcalHeaderBytes + n_blocks * block;
  if (bytes.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat("sqcal: file size must be ", want, " bytes for L=", L, " Hkv=", H,
                                                   " D=", D, " (got ", bytes.size(), ")"));
  }
  p.n_layers = static_cast<int32_t>(L);
  p.n_kv_heads = static_cast<int32_t>(H);
  p.head_dim = static_cast<int32_t>(D);
  p.spectra.resize(n_blocks);
  p.centered.resize(n_blocks);
  for (uint64_t b = 0; b < n_blocks; ++b) {
    const uint64_t l = b / (2 * H), h = (b / 2) % H, t = b % 2;
    const std::string where = absl::StrCat("(layer ", l, ", head ", h, ", ", t == 0 ? "K" : "V", ")");
    SQ_TRY(GetSpectrum(r, p.spectra[b], D, where));
    SqSpectrum& c = p.centered[b];
    c.mean.resize(D);
    SQ_TRY(r.GetFloats(c.mean.data(), D, "mean"));
    for (uint32_t i = 0; i < D; ++i) {
      if (!std::isfinite(c.mean[i])) {
        return absl::InvalidArgumentError(absl::StrCat("sqcal: mean[", i, "] of ", where, " is not finite"));
      }
    }
    SQ_TRY(GetSpectrum(r, c, D, absl::StrCat(where, " centred")));
  }
  return p;
}

absl::Status WriteSqcal(const SqProfile& p, const std::string& path) {
  const std::string bytes = SerializeSqcal(p);
  // Write to a temporary and rename, so a reader never sees half a file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return absl::PermissionDeniedError(absl::StrCat("sqcal: cannot write ", tmp));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) return absl::InternalError(absl::StrCat("sqcal: short write to ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("sqcal: rename ", tmp, " -> ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<SqProfile> ReadSqcal(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("sqcal: ", path, ": ", ec.message()));
  const uint64_t cap = kSqcalHeaderBytes + uint64_t{kSqcalMaxLayers} * kSqcalMaxKvHeads * 2 * BlockBytes(kSqcalMaxHeadDim);
  if (size > cap) return absl::InvalidArgumentError(absl::StrCat("sqcal: ", path, " is ", size, " bytes, over the cap"));
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("sqcal: cannot open ", path));
  std::string bytes(static_cast<size_t>(size), '\0');
  f.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<uintmax_t>(f.gcount()) != size) return absl::DataLossError(absl::StrCat("sqcal: short read of ", path));
  absl::StatusOr<SqProfile> p = ParseSqcal(bytes, std::filesystem::path(path).stem().string());
  if (!p.ok()) return absl::Status(p.status().code(), absl::StrCat(path, ": ", p.status().message()));
  return p;
}

absl::StatusOr<uint64_t> SqModelHash(const std::string& model_path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(model_path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("model hash: ", model_path, ": ", ec.message()));
  std::ifstream f(model_path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("model hash: cannot open ", model_path));
  std::string head(static_cast<size_t>(std::min<uintmax_t>(size, 4u << 20)), '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  const uint64_t s64 = size;
  for (int i = 0; i < 8; ++i) mix(static_cast<unsigned char>(s64 >> (8 * i)));
  for (char c : head) mix(static_cast<unsigned char>(c));
  return h;
}

}  // namespace kvstream
