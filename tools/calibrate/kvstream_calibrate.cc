// kvstream-calibrate: computes a SpectralQuant calibration profile (.sqcal,
// spectral_quant.md §4.1, §6.2) for a model by running a text corpus
// through it and recording every layer's post-RoPE K and V.
//
//   build/kvstream-calibrate --model models/SmolLM2-135M-Instruct.Q4_1.gguf
//       --corpus data/calibration/corpus.txt --out models/default.sqcal  (one line)
//
// The server loads every *.sqcal beside the model (stem = profile name;
// "default" serves requests that name no profile). `kvstream calibrate`
// runs this binary. The model is loaded directly (not through the engine),
// so no strategy calibrates at start.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/kv/spectral_quant/sq_calibrate.h"
#include "engine/kv/spectral_quant/sq_strategy.h"
#include "engine/model/llama_model.h"
#include "engine/model/loader/weights.h"
#include "engine/tokenizer/tokenizer.h"
#include "tools/argv_dashes.h"

ABSL_FLAG(std::string, model, "", "GGUF file or Hugging Face folder (required)");
ABSL_FLAG(std::string, corpus, "data/calibration/corpus.txt",
          "texts separated by '---' lines (see data/calibration/README.md)");
ABSL_FLAG(std::string, out, "",
          "output .sqcal (default: default.sqcal beside the model; 'user-cache': default.sqcal in the user "
          "cache the server also searches, ~/.cache/kvstream/sqcal/<model hash>/)");
ABSL_FLAG(bool, skip_existing, false, "do nothing if --out already holds a valid profile of this model");
ABSL_FLAG(std::string, device, "auto", "auto | cpu | cuda");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0 = all cores)");
ABSL_FLAG(bool, quiet, false, "no progress bar");

namespace {

// One line redrawn in place: [#####.....] texts, tokens per layer, rate.
void Progress(int64_t done, int64_t total, int64_t tokens, double secs) {
  constexpr int kWidth = 30;
  const int fill = total > 0 ? static_cast<int>(kWidth * done / total) : kWidth;
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < fill ? '#' : '.';
  bar[kWidth] = '\0';
  std::fprintf(stderr, "\r[%s] %lld/%lld texts  %lld tokens/layer (cap %lld)  %.0f tok/s", bar,
               static_cast<long long>(done), static_cast<long long>(total), static_cast<long long>(tokens),
               static_cast<long long>(kvstream::kSqCalibMaxTokensPerLayer), secs > 0 ? tokens / secs : 0.0);
  std::fflush(stderr);
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "\nerror: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  kvstream::DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const std::string model_path = absl::GetFlag(FLAGS_model);
  if (model_path.empty()) {
    std::fprintf(stderr, "error: --model is required\n");
    return 2;
  }
  std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) out = (std::filesystem::absolute(model_path).parent_path() / "default.sqcal").string();
  if (out == "user-cache") {
    auto h = kvstream::SqModelHash(model_path);
    if (!h.ok()) return Fail(h.status());
    const std::filesystem::path dir = kvstream::SqUserCacheDir(*h);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    out = (dir / "default.sqcal").string();
  }
  if (absl::GetFlag(FLAGS_skip_existing) && std::filesystem::exists(out)) {
    auto h = kvstream::SqModelHash(model_path);
    auto have = kvstream::ReadSqcal(out);
    if (h.ok() && have.ok() && have->model_hash == *h) {
      std::fprintf(stderr, "%s is up to date\n", out.c_str());
      return 0;
    }
  }
  const std::string dev = absl::GetFlag(FLAGS_device);
  if (dev != "auto" && dev != "cpu" && dev != "cuda") {
    std::fprintf(stderr, "error: --device must be auto, cpu or cuda (got '%s')\n", dev.c_str());
    return 2;
  }
  const int threads = absl::GetFlag(FLAGS_threads);
  at::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
  const bool cuda = dev == "cuda" || (dev == "auto" && at::hasCUDA());
  const c10::Device device = cuda ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);

  auto texts = kvstream::SqReadCorpus(absl::GetFlag(FLAGS_corpus));
  if (!texts.ok()) return Fail(texts.status());
  auto hash = kvstream::SqModelHash(model_path);
  if (!hash.ok()) return Fail(hash.status());
  std::fprintf(stderr, "loading %s ...\n", model_path.c_str());
  auto weights = kvstream::LoadWeights(model_path);
  if (!weights.ok()) return Fail(weights.status());
  auto tok = kvstream::Tokenizer::Create(std::move(weights->tokenizer));
  if (!tok.ok()) return Fail(tok.status());
  std::unique_ptr<kvstream::LlamaModel> model;
  try {
    auto m = kvstream::LlamaModel::Create(std::move(*weights), device, cuda ? at::kBFloat16 : at::kFloat);
    if (!m.ok()) return Fail(m.status());
    model = std::move(*m);
  } catch (const c10::Error& e) {
    return Fail(absl::InternalError(e.what_without_backtrace()));
  }
  const std::string name = std::filesystem::path(out).stem().string();
  const auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  kvstream::SqProgressFn progress = nullptr;
  if (!absl::GetFlag(FLAGS_quiet)) {
    progress = [&](int64_t d, int64_t t, int64_t n) { Progress(d, t, n, secs()); };
  }
  auto profile = kvstream::SqCalibrateModel(*model, **tok, *texts, name, *hash, progress);
  if (!profile.ok()) return Fail(profile.status());
  if (absl::Status s = kvstream::WriteSqcal(*profile, out); !s.ok()) return Fail(s);
  double kd = 0, pr = 0;
  for (int64_t l = 0; l < profile->n_layers; ++l) {
    for (int64_t h = 0; h < profile->n_kv_heads; ++h) {
      kd += profile->at(l, h, 0).var_95;
      pr += profile->at(l, h, 0).participation_ratio;
    }
  }
  const double n = static_cast<double>(profile->n_layers * profile->n_kv_heads);
  std::fprintf(stderr, "\nwrote %s: profile '%s', L=%d Hkv=%d D=%d, %llu tokens/layer, K var_95 mean %.1f, "
               "K participation ratio mean %.2f, %.1f s\n",
               out.c_str(), name.c_str(), profile->n_layers, profile->n_kv_heads, profile->head_dim,
               static_cast<unsigned long long>(profile->n_tokens), kd / n, pr / n, secs());
  return 0;
}
