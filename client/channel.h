// The connection every command shares: channel (plaintext or TLS, round-robin
// over every address of a dns:/// target), bearer token and deadline.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace kvstream::client {

struct ConnectionOptions {
  std::string target = "127.0.0.1:50051";
  std::string tls_ca_file;      // "" = plaintext
  std::string auth_token_file;  // "" = no authorization metadata
  std::string timeout;          // "" = no deadline; "2.5" seconds or "500ms"
};

class Connection {
 public:
  // Reads the CA and token files and parses the timeout: InvalidArgument
  // naming the flag when one is unreadable or malformed. No I/O on the
  // network yet (channels connect lazily).
  static absl::StatusOr<Connection> Open(const ConnectionOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // Adds the authorization metadata and the deadline to a call's context.
  void Prepare(grpc::ClientContext& context) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string token_;
  std::optional<absl::Duration> timeout_;
};

// How Open() turns --target into a channel, apart so the target rules are
// testable without a network. The target goes to gRPC unchanged.
//   dns:///host:port, dns://dns-server/host:port, dns:host:port
//     every address the name resolves to (a Kubernetes headless Service gives
//     one per ready pod) with round_robin, and UNAVAILABLE retried (a draining
//     pod answers UNAVAILABLE before any token, so the retry lands elsewhere).
//     The port is required: gRPC's DNS resolver would otherwise try 443.
//   anything else (host:port, ipv4:, unix:, ...): gRPC's default, pick_first.
struct ChannelPlan {
  bool round_robin = false;
  std::string service_config_json;  // "" = gRPC's default
};
absl::StatusOr<ChannelPlan> PlanChannel(absl::string_view target);

// "2.5" -> 2.5 s, "500ms" -> 0.5 s (absl::ParseDuration), "" -> nullopt.
// InvalidArgument for anything else or a non-positive duration.
absl::StatusOr<std::optional<absl::Duration>> ParseTimeout(absl::string_view text);

// The options from the --target, --tls-ca, --auth-token-file and --timeout flags.
ConnectionOptions ConnectionOptionsFromFlags();

}  // namespace kvstream::client
