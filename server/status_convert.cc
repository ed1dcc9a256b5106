#include "server/status_convert.h"

#include <string>

namespace kvstream::server {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  // absl and gRPC share the google.rpc numbering 0..16; anything else is a bug.
  const grpc::StatusCode g = (code >= 0 && code <= 16) ? static_cast<grpc::StatusCode>(code)
                                                       : grpc::StatusCode::UNKNOWN;
  return grpc::Status(g, std::string(status.message()));
}

}  // namespace kvstream::server
