#include "client/load_flags.h"

#include <unistd.h>

#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

ABSL_FLAG(std::string, strategies, "dense",
          "comma list of KV strategies to compare: dense, sam_gate, spectral_quant, entmax_kv, akv, laser_kv "
          "(one the server lacks is counted as errors)");
ABSL_FLAG(std::string, concurrency, "1",
          "bench: closed-loop workers, or a list 1,4,16 to sweep (with --request-rate: the most requests in "
          "flight, 0 = no cap); eval: requests in flight (default 4)");
ABSL_FLAG(std::string, json_file, "", "write the full report as JSON to this file (also --json=FILE)");
ABSL_FLAG(std::string, report, "", "render: a saved `kvstream eval` JSON report to print and plot");
ABSL_FLAG(std::string, plot, "", "write a PNG chart to this file (gnuplot)");
ABSL_FLAG(std::string, corpus, "",
          "folder of .txt files for prompts and filler (default data/corpus: Jane Austen, public domain)");

ABSL_FLAG(int32_t, requests, 32, "requests per strategy and concurrency level");
ABSL_FLAG(std::string, prompt_len, "256",
          "prompt tokens: N, uniform:MIN:MAX or normal:MEAN:STDDEV (clamped to >= 1)");
ABSL_FLAG(std::string, gen_len, "64", "generated tokens (EOS ignored): N, uniform:MIN:MAX or normal:MEAN:STDDEV");
ABSL_FLAG(double, request_rate, 0,
          "Poisson arrivals, requests per second; 0 = closed loop with --concurrency workers");

ABSL_FLAG(std::string, tasks, "passkey,needle,ppl,agreement", "eval tasks: passkey, needle, ppl, agreement");
ABSL_FLAG(std::string, contexts, "1024,2048", "eval context lengths in tokens (prompt length)");
ABSL_FLAG(std::string, depths, "0,25,50,75,100", "passkey depths, % of the filler before the key");
ABSL_FLAG(int32_t, samples, 4, "eval samples per cell (passkey: per context and depth; others: per context)");
ABSL_FLAG(std::string, prompt_format, "auto",
          "eval prompt wrapping: chatml, plain, or auto (chatml when the tokenizer knows <|im_start|>)");
ABSL_FLAG(int32_t, ppl_tokens, 128, "ppl: tokens scored (teacher-forced) at the end of each context");
ABSL_FLAG(int32_t, agreement_tokens, 64, "agreement: greedy tokens compared with dense");

namespace kvstream::client {

void RewriteJsonFileArg(std::vector<std::string>& args) {
  for (std::string& arg : args) {
    if (!absl::StartsWith(arg, "--json=")) continue;
    const std::string value = absl::AsciiStrToLower(arg.substr(7));
    bool as_bool = false;
    if (!absl::SimpleAtob(value, &as_bool)) arg = "--json-file=" + arg.substr(7);
  }
}

std::string CorpusDir(const std::string& flag_value) {
  namespace fs = std::filesystem;
  if (!flag_value.empty()) return flag_value;
  if (fs::is_directory("data/corpus")) return "data/corpus";
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path near = exe.parent_path().parent_path() / "data" / "corpus";
    if (fs::is_directory(near)) return near.string();
  }
  return "data/corpus";
}

}  // namespace kvstream::client
