// grpc.reflection.v1alpha.ServerReflection, answered from the protobuf
// descriptors compiled into the server, so grpcurl and other gRPC tools work
// with no .proto at hand.
//
// NOTE(server): our own rather than gRPC's reflection plugin because the
// plugin's service cannot be made to check the bearer token (see auth.h):
// with --auth-token-file, reflection too answers UNAUTHENTICATED without it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "server/auth.h"

namespace kvstream::server {

class ReflectionService final : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  // `services`: full names listed by list_services. `auth` must outlive the
  // service.
  ReflectionService(std::vector<std::string> services, const TokenAuth& auth);

  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* ctx) override;

  // One request's answer (a response carrying error_response when the
  // symbol, file or extension is unknown). Pure: exposed for tests.
  grpc::reflection::v1alpha::ServerReflectionResponse Answer(
      const grpc::reflection::v1alpha::ServerReflectionRequest& request) const;

 private:
  std::vector<std::string> services_;
  const TokenAuth& auth_;
};

}  // namespace kvstream::server
