// Finding, loading and (at start, if missing) computing the calibration
// profiles of a model (spectral_quant.md §6.2; decisions in sq_strategy.h).
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_strategy.h"
#include "engine/model/llama_model.h"
#include "engine/model/loader/weights.h"
#include "engine/status_macros.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvstream {
namespace fs = std::filesystem;
namespace {

fs::path UserCacheDirPath(uint64_t hash) {
  fs::path base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != '\0') {
    base = x;
  } else if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') {
    base = fs::path(h) / ".cache";
  } else {
    base = fs::temp_directory_path();
  }
  return base / "kvstream" / "sqcal" / absl::StrFormat("%016x-%s", hash, kSqCalibRecipe);
}

// $KVSTREAM_CALIBRATION_CORPUS, else data/calibration/corpus.txt in the
// current directory or an ancestor of the executable's directory.
std::string FindCorpus() {
  if (const char* e = std::getenv("KVSTREAM_CALIBRATION_CORPUS"); e != nullptr && *e != '\0') return e;
  const fs::path rel = fs::path("data") / "calibration" / "corpus.txt";
  std::error_code ec;
  if (fs::exists(rel, ec)) return rel.string();
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  for (fs::path d = exe.parent_path(); !d.empty(); d = d.parent_path()) {
    if (fs::exists(d / rel, ec)) return (d / rel).string();
    if (fs::exists(d / "share" / "kvstream" / "calibration" / "corpus.txt", ec)) {
      return (d / "share" / "kvstream" / "calibration" / "corpus.txt").string();
    }
    if (d == d.root_path()) break;
  }
  return "";
}

// Adds the matching *.sqcal of `dir` to `out` (earlier dirs win a name).
absl::Status LoadDir(const fs::path& dir, uint64_t hash, const KvGeometry& g,
                     std::map<std::string, std::shared_ptr<const SqProfile>>* out) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::OkStatus();
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".sqcal") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& f : files) {
    const std::string name = f.stem().string();
    if (out->count(name) != 0) continue;
    absl::StatusOr<SqProfile> p = ReadSqcal(f.string());
    if (!p.ok() && absl::IsFailedPrecondition(p.status())) {
      // A stale format version (sq_profile.h): never used, redone below.
      spdlog::warn("spectral_quant: skipping {}", std::string(p.status().message()));
      continue;
    }
    if (!p.ok()) return p.status();
    if (p->model_hash != hash) {
      spdlog::warn("spectral_quant: skipping {}: made for another model (hash {:016x}, this model {:016x})",
                   f.string(), p->model_hash, hash);
      continue;
    }
    if (p->n_layers != g.n_layers || p->n_kv_heads != g.n_kv_heads || p->head_dim != g.head_dim) {
      return absl::FailedPreconditionError(absl::StrCat(f.string(), ": profile shape L=", p->n_layers, " Hkv=",
                                                        p->n_kv_heads, " D=", p->head_dim, " does not match the model (L=",
                                                        g.n_layers, " Hkv=", g.n_kv_heads, " D=", g.head_dim, ")"));
    }
    (*out)[name] = std::make_shared<const SqProfile>(std::move(*p));
  }
  return absl::OkStatus();
}

absl::StatusOr<SqProfile> CalibrateAtStart(const KvGeometry& g, uint64_t hash, const std::string& corpus) {
  KV_ASSIGN_OR_RETURN(std::vector<std::string> texts, SqReadCorpus(corpus));
  KV_ASSIGN_OR_RETURN(LoadedWeights w, LoadWeights(g.model_path));
  KV_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, Tokenizer::Create(std::move(w.tokenizer)));
  std::unique_ptr<LlamaModel> model;
  try {
    KV_ASSIGN_OR_RETURN(model, LlamaModel::Create(std::move(w), g.device, g.dtype));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("spectral_quant calibration model: ", e.what_without_backtrace()));
  }
  return SqCalibrateModel(*model, *tok, texts, "default", hash);
}

}  // namespace

std::string SqUserCacheDir(uint64_t model_hash) { return UserCacheDirPath(model_hash).string(); }

absl::StatusOr<std::vector<std::shared_ptr<const SqProfile>>> SqLoadProfiles(const KvGeometry& g, bool calibrate) {
  KV_ASSIGN_OR_RETURN(const uint64_t hash, SqModelHash(g.model_path));
  const fs::path model_dir = fs::absolute(fs::path(g.model_path)).parent_path();
  const fs::path cache_dir = UserCacheDirPath(hash);
  std::map<std::string, std::shared_ptr<const SqProfile>> found;
  KV_RETURN_IF_ERROR(LoadDir(model_dir, hash, g, &found));
  KV_RETURN_IF_ERROR(LoadDir(cache_dir, hash, g, &found));
  if (found.count("default") == 0 && calibrate) {
    const std::string corpus = FindCorpus();
    if (corpus.empty()) {
      spdlog::warn("spectral_quant: no default profile for {} and no calibration corpus found "
                   "(set KVSTREAM_CALIBRATION_CORPUS); spectral_quant requests will be refused",
                   g.model_path);
    } else {
      spdlog::info("spectral_quant: calibrating {} on {} (once; the profile is cached)", g.model_path, corpus);
      const auto t0 = std::chrono::steady_clock::now();
      KV_ASSIGN_OR_RETURN(SqProfile p, CalibrateAtStart(g, hash, corpus));
      spdlog::info("spectral_quant: calibrated on {} tokens per layer in {:.1f} s", p.n_tokens,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      // Beside the model if writable, else the user cache (README decision).
      std::string where = (model_dir / "default.sqcal").string();
      absl::Status s = access(model_dir.c_str(), W_OK) == 0 ? WriteSqcal(p, where)
                                                           : absl::PermissionDeniedError("read-only");
      if (!s.ok()) {
        std::error_code ec;
        fs::create_directories(cache_dir, ec);
        where = (cache_dir / "default.sqcal").string();
        s = WriteSqcal(p, where);
      }
      if (!s.ok()) {
        spdlog::warn("spectral_quant: could not cache the profile: {}", std::string(s.message()));
      } else {
        spdlog::info("spectral_quant: profile written to {}", where);
      }
      found["default"] = std::make_shared<const SqProfile>(std::move(p));
    }
  }
  std::vector<std::shared_ptr<const SqProfile>> out;
  for (auto& [name, p] : found) out.push_back(p);
  return out;
}

}  // namespace kvstream
