// The CLI's commands. Each takes the parsed command line (its flags already
// set and checked against the command's flag list in cli.cc) and returns the
// exit code (client/output.h).
#pragma once

#include <string>

#include "client/args.h"
#include "kvstream/v1/kvstream.pb.h"

namespace kvstream::client {

int RunCli(int argc, char** argv);  // cli.cc: parse, dispatch, usage

int RunGenerate(const ParsedArgs& args);  // generate_cmd.cc
int RunTokenize(const ParsedArgs& args);  // info_cmds.cc
int RunInfo(const ParsedArgs& args);      // info_cmds.cc
int RunKnobs(const ParsedArgs& args);     // info_cmds.cc (no server)
int RunHealth(const ParsedArgs& args);    // health_cmd.cc
int RunBench(const ParsedArgs& args);     // bench_cmd.cc
int RunEval(const ParsedArgs& args);      // eval_cmd.cc
int RunCalibrate(const ParsedArgs& args);  // calibrate_cmd.cc
int RunRender(const ParsedArgs& args);    // eval_cmd.cc: a saved eval report, no server

// The generate summary line (stderr): tokens, TTFT, tok/s, KV bytes,
// compression ratio, finish reason. Server timings are used when present,
// the client's own (first token, end of stream) otherwise.
std::string FormatSummary(const kvstream::v1::GenerateResult& result, double client_ttft_ms, double client_total_ms);

// "512 B", "12.3 KiB", "4.50 MiB", ...
std::string FormatBytes(int64_t bytes);

// Standard input, whole (for --prompt - and --text -).
std::string ReadStdin();

}  // namespace kvstream::client
