// The one place absl::Status becomes grpc::Status: codes map one-to-one by
// number (both are the google.rpc codes), the message passes through.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kvstream::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace kvstream::server
