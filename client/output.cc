#include "client/output.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"

namespace kvstream::client {
namespace {

void PrintError(int code, absl::string_view message) {
  std::fprintf(stderr, "error: %s: %.*s\n", StatusCodeName(code).c_str(), static_cast<int>(message.size()),
               message.data());
}

}  // namespace

std::string StatusCodeName(int code) {
  // gRPC and absl share the google.rpc code numbers (0..16).
  if (code < 0 || code > 16) return absl::StrCat("CODE_", code);
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

int ReportRpcError(const grpc::Status& status) {
  PrintError(static_cast<int>(status.error_code()), status.error_message());
  return kExitFailed;
}

int ReportUsageError(const absl::Status& status) {
  PrintError(static_cast<int>(status.code()), status.message());
  return kExitUsage;
}

int ReportFailure(const absl::Status& status) {
  PrintError(static_cast<int>(status.code()), status.message());
  return kExitFailed;
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) return absl::InternalError(absl::StrCat("JSON conversion failed: ", status.ToString()));
  return out;
}

}  // namespace kvstream::client
