// What the CLI prints on failure, and proto -> JSON. Exit codes: 0 success,
// 1 the call failed (or the server is not SERVING), 2 usage error.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/status.h"

namespace kvstream::client {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// "INVALID_ARGUMENT" for 3; "CODE_<n>" outside the gRPC codes.
std::string StatusCodeName(int code);

// Prints "error: <CODE_NAME>: <message>" to stderr; returns kExitFailed.
int ReportRpcError(const grpc::Status& status);
// Same for a local problem with the arguments; returns kExitUsage.
int ReportUsageError(const absl::Status& status);
// Same for a local failure that is not the arguments' fault; returns kExitFailed.
int ReportFailure(const absl::Status& status);

// One line of JSON with the proto field names and every field printed, also
// zeros and empty ones.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

}  // namespace kvstream::client
