// Where the bench and eval reports go: the JSON to --json-file (pretty) and
// to stdout with --json (one line), else the table to stdout.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/args.h"
#include "kvstream/v1/kvstream.pb.h"
#include "nlohmann/json.hpp"

namespace kvstream::client {

// "kvstream bench --concurrency=1,4 ..." from the flags as given.
std::string CommandLineOf(const ParsedArgs& args, absl::string_view command);

// PermissionDenied when --json-file cannot be written.
absl::Status WriteReport(const nlohmann::ordered_json& report, const std::string& table);

// The fields of ModelInfo a report records.
nlohmann::ordered_json ModelJson(const kvstream::v1::ModelInfo& info);

}  // namespace kvstream::client
