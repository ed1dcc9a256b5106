// kvstream CLI entry: parses the command line, checks each flag belongs to
// the command, prints usage, dispatches.
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "client/args.h"
#include "client/commands.h"
#include "client/load_flags.h"
#include "client/output.h"

namespace kvstream::client {
namespace {

constexpr std::array<absl::string_view, 4> kConnectionFlags = {"target", "tls_ca", "auth_token_file", "timeout"};

struct Command {
  absl::string_view name;
  absl::string_view summary;
  std::vector<absl::string_view> flags;  // its own; connection flags are added when `remote`
  bool remote;
  int (*run)(const ParsedArgs&);
};

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"generate",
       "stream a completion (Generate)",
       {"prompt", "chat", "prompt_ids", "add_generation_prompt", "max_new_tokens", "temperature", "top_p", "top_k",
        "repetition_penalty", "seed", "stop", "ignore_eos", "logprobs", "top_logprobs", "strategy", "kv", "request_id",
        "teacher_forced", "json"},
       true,
       &RunGenerate},
      {"tokenize",
       "tokenize text with the served model's tokenizer (Tokenize)",
       {"text", "add_special_tokens", "json"},
       true,
       &RunTokenize},
      {"info", "show the served model and server state (GetModelInfo)", {"json"}, true, &RunInfo},
      {"health", "grpc.health.v1 Check: prints the status, exit 0 iff SERVING", {"service"}, true, &RunHealth},
      {"knobs", "list every strategy's --kv knobs (no server needed)", {"strategy", "json"}, false, &RunKnobs},
      {"bench",
       "load generator: latency percentiles, throughput, KV bytes per strategy",
       {"strategies", "kv", "concurrency", "requests", "prompt_len", "gen_len", "request_rate", "seed", "corpus",
        "json", "json_file", "plot"},
       true,
       &RunBench},
      {"eval",
       "quality per strategy vs dense: passkey, needle, ppl, agreement",
       {"strategies", "kv", "tasks", "contexts", "depths", "samples", "seed", "concurrency", "prompt_format",
        "ppl_tokens", "agreement_tokens", "corpus", "json", "json_file", "plot"},
       true,
       &RunEval},
      {"calibrate",
       "compute a SpectralQuant .sqcal profile for a model (runs kvstream-calibrate; no server)",
       {"model", "corpus", "out", "device"},
       false,
       &RunCalibrate},
      {"render",
       "print a saved eval report's table and draw its PNG (no server needed)",
       {"report", "plot"},
       false,
       &RunRender},
  };
  return kCommands;
}

std::vector<absl::string_view> AllowedFlags(const Command& c) {
  std::vector<absl::string_view> flags = c.flags;
  if (c.remote) flags.insert(flags.end(), kConnectionFlags.begin(), kConnectionFlags.end());
  return flags;
}

std::string Usage() {
  std::string out =
      "kvstream: command-line client of the kvstream gRPC server\n\n"
      "usage: kvstream <command> [flags]\n\ncommands:\n";
  for (const Command& c : Commands())
    absl::StrAppend(&out, "  ", c.name, std::string(10 - c.name.size(), ' '), c.summary, "\n");
  absl::StrAppend(&out, "\nflags of every command that calls the server:\n", FlagHelp(kConnectionFlags),
                  "\n`kvstream <command> --help` lists the command's flags. Flag names take dashes or underscores\n"
                  "(--max-new-tokens = --max_new_tokens). Exit codes: 0 ok, 1 the call failed, 2 usage error.\n"
                  "Example:\n  kvstream generate --prompt 'The capital of France is' --max-new-tokens 16 "
                  "--temperature 0 \\\n      --strategy akv --kv hot_budget=256,scoring_strategy=fifo\n");
  return out;
}

const Command* FindCommand(absl::string_view name) {
  for (const Command& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string CommandUsage(const Command& c) {
  std::string out = absl::StrCat("kvstream ", c.name, ": ", c.summary, "\n\nflags:\n", FlagHelp(c.flags));
  if (c.remote) absl::StrAppend(&out, "\nconnection:\n", FlagHelp(kConnectionFlags));
  return out;
}

}  // namespace

int RunCli(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  RewriteJsonFileArg(args);  // bench/eval --json=FILE
  auto parsed = ParseArgs(args);
  if (!parsed.ok()) {
    ReportUsageError(parsed.status());
    std::fputs("see kvstream --help\n", stderr);
    return kExitUsage;
  }
  // `kvstream help generate` = `kvstream generate --help`.
  if (parsed->command == "help" && !parsed->positionals.empty()) {
    parsed->command = parsed->positionals.front();
    parsed->positionals.clear();
    parsed->help = true;
  }
  if (parsed->command.empty() || parsed->command == "help") {
    const bool asked = parsed->help || parsed->command == "help";
    std::fputs(Usage().c_str(), asked ? stdout : stderr);
    return asked ? kExitOk : kExitUsage;
  }
  const Command* command = FindCommand(parsed->command);
  if (command == nullptr) {
    std::string names;
    for (const Command& c : Commands()) absl::StrAppend(&names, names.empty() ? "" : ", ", c.name);
    return ReportUsageError(
        absl::InvalidArgumentError(absl::StrCat("unknown command '", parsed->command, "'; commands: ", names)));
  }
  if (parsed->help) {
    std::fputs(CommandUsage(*command).c_str(), stdout);
    return kExitOk;
  }
  if (!parsed->positionals.empty()) {
    return ReportUsageError(absl::InvalidArgumentError(absl::StrCat(
        "unexpected argument '", parsed->positionals.front(), "' (text goes in a flag, e.g. --prompt '...')")));
  }
  auto allowed = AllowedFlags(*command);
  if (auto status = CheckFlagsAllowed(*parsed, command->name, allowed); !status.ok()) {
    return ReportUsageError(status);
  }
  return command->run(*parsed);
}

}  // namespace kvstream::client
