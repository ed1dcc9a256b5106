#include "client/report_output.h"

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "client/flags.h"
#include "client/load_flags.h"

namespace kvstream::client {

using Json = nlohmann::ordered_json;

std::string CommandLineOf(const ParsedArgs& args, absl::string_view command) {
  std::string out = absl::StrCat("kvstream ", command);
  for (const std::string& name : args.order) {
    for (const std::string& v : args.All(name)) {
      absl::StrAppend(&out, " ", DashName(name));
      if (v != "true" || !absl::FindCommandLineFlag(name)->IsOfType<bool>()) absl::StrAppend(&out, "=", v);
    }
  }
  return out;
}

absl::Status WriteReport(const Json& report, const std::string& table) {
  const std::string json_file = absl::GetFlag(FLAGS_json_file);
  if (!json_file.empty()) {
    std::ofstream out(json_file);
    out << report.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    out.close();
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write --json-file ", json_file));
    std::fprintf(stderr, "[kvstream] report written to %s\n", json_file.c_str());
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", report.dump(-1, ' ', false, Json::error_handler_t::replace).c_str());
  } else {
    std::fputs(table.c_str(), stdout);
  }
  std::fflush(stdout);
  return absl::OkStatus();
}

Json ModelJson(const kvstream::v1::ModelInfo& info) {
  Json j;
  j["name"] = info.name();
  j["architecture"] = info.architecture();
  j["n_layers"] = info.n_layers();
  j["n_kv_heads"] = info.n_kv_heads();
  j["head_dim"] = info.head_dim();
  j["context_length"] = info.context_length();
  j["device"] = info.device();
  j["dtype"] = info.dtype();
  j["strategies"] = std::vector<std::string>(info.strategies().begin(), info.strategies().end());
  return j;
}

}  // namespace kvstream::client
