// `kvstream calibrate --model M --corpus FILE --out M.sqcal`: computes a
// SpectralQuant calibration profile (spectral_quant.md §6.2) locally, no
// server. The CLI does not link libtorch, so this runs the engine-side tool
// `kvstream-calibrate` (tools/calibrate/), looked up beside this executable
// and then on PATH, passing the flags through; its progress bar and exit code
// are the command's.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "client/commands.h"

ABSL_FLAG(std::string, model, "", "calibrate: GGUF file or Hugging Face folder of the model");
ABSL_FLAG(std::string, out, "", "calibrate: output .sqcal (default: default.sqcal beside the model)");
ABSL_FLAG(std::string, device, "auto", "calibrate: auto | cpu | cuda");

namespace kvstream::client {

int RunCalibrate(const ParsedArgs& args) {
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) {
    std::fprintf(stderr, "kvstream calibrate: --model is required\n");
    return 2;
  }
  std::vector<std::string> argv = {"kvstream-calibrate", "--model=" + model, "--device=" + absl::GetFlag(FLAGS_device)};
  if (args.Has("corpus")) argv.push_back("--corpus=" + args.All("corpus").back());
  if (!absl::GetFlag(FLAGS_out).empty()) argv.push_back("--out=" + absl::GetFlag(FLAGS_out));
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::string beside = (self.parent_path() / "kvstream-calibrate").string();
    if (access(beside.c_str(), X_OK) == 0) execv(beside.c_str(), cargv.data());
  }
  execvp("kvstream-calibrate", cargv.data());
  std::fprintf(stderr,
               "kvstream calibrate: cannot run kvstream-calibrate (%s); it is built with the engine "
               "(cmake target kvstream-calibrate)\n",
               std::strerror(errno));
  return 1;
}

}  // namespace kvstream::client
