// Bearer-token authentication (--auth-token-file). Every RPC except
// grpc.health.v1.Health must carry `authorization: Bearer <token>`; health
// stays open so orchestrators (docker HEALTHCHECK, Kubernetes probes) need no
// secret.
//
// NOTE(server): checked inside each handler rather than by an
// AuthMetadataProcessor: gRPC C++ runs processors only on TLS ports (the
// insecure credentials refuse one), and a token is just as needed behind a
// TLS-terminating proxy. Server interceptors cannot reject a call either.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvstream::server {

class TokenAuth {
 public:
  TokenAuth() = default;  // no token: every call passes
  // Reads the token file: surrounding whitespace is dropped (files written
  // by `echo` end in a newline). InvalidArgument naming the flag when the
  // file is unreadable, empty, or holds whitespace inside the token (which
  // no client could send in a header).
  static absl::StatusOr<TokenAuth> FromFile(const std::string& path);

  bool enabled() const { return !token_.empty(); }
  // OK when disabled or the call's metadata carries the token;
  // UNAUTHENTICATED naming what was missing otherwise (never the token).
  grpc::Status Check(const grpc::ServerContextBase& ctx) const;

 private:
  std::string token_;
};

// Constant-time in the length of `want`, so response timing does not leak
// how many leading bytes of a guess were right.
bool TokenEquals(absl::string_view got, absl::string_view want);

}  // namespace kvstream::server
