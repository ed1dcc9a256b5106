// Flags of `kvstream bench` and `kvstream eval` (defined in load_flags.cc).
// They reuse --seed, --kv and --json from client/flags.h; --json=FILE (a
// value that is not a bool) is rewritten to --json-file=FILE before parsing
// (RewriteJsonFileArg), so `--json` alone still means "JSON on stdout".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"

// Both commands.
ABSL_DECLARE_FLAG(std::string, strategies);   // "dense,akv,..."; a repeated name gets "#2"
ABSL_DECLARE_FLAG(std::string, concurrency);  // bench: a list "1,4,16" (a sweep); eval: one number
ABSL_DECLARE_FLAG(std::string, json_file);
ABSL_DECLARE_FLAG(std::string, plot);
ABSL_DECLARE_FLAG(std::string, report);  // render: saved eval report
ABSL_DECLARE_FLAG(std::string, corpus);

// bench.
ABSL_DECLARE_FLAG(int32_t, requests);
ABSL_DECLARE_FLAG(std::string, prompt_len);
ABSL_DECLARE_FLAG(std::string, gen_len);
ABSL_DECLARE_FLAG(double, request_rate);

// eval.
ABSL_DECLARE_FLAG(std::string, tasks);
ABSL_DECLARE_FLAG(std::string, contexts);
ABSL_DECLARE_FLAG(std::string, depths);
ABSL_DECLARE_FLAG(int32_t, samples);
ABSL_DECLARE_FLAG(std::string, prompt_format);
ABSL_DECLARE_FLAG(int32_t, ppl_tokens);
ABSL_DECLARE_FLAG(int32_t, agreement_tokens);

namespace kvstream::client {

// "--json=out.json" -> "--json-file=out.json" (a value that absl would not
// take as a bool). Other arguments unchanged.
void RewriteJsonFileArg(std::vector<std::string>& args);

// The corpus folder: --corpus if given, else data/corpus under the working
// directory, else ../data/corpus next to the executable (build/kvstream).
std::string CorpusDir(const std::string& flag_value);

}  // namespace kvstream::client
