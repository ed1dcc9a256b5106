#include "client/channel.h"

#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/flags.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace kvstream::client {
namespace {

// Round-robin over every resolved address: without it gRPC picks the first
// address that connects and sends everything there.
constexpr char kRoundRobinConfig[] = R"({"loadBalancingConfig":[{"round_robin":{}}]})";

absl::StatusOr<std::string> ReadFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<std::optional<absl::Duration>> ParseTimeout(absl::string_view text) {
  text = absl::StripAsciiWhitespace(text);
  if (text.empty()) return std::optional<absl::Duration>();
  absl::Duration d;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout '", text, "' is not seconds (2.5) or a duration (500ms, 2m)"));
  }
  if (d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--timeout must be a positive finite duration (got ", text, ")"));
  }
  return std::optional<absl::Duration>(d);
}

absl::StatusOr<Connection> Connection::Open(const ConnectionOptions& options) {
  if (options.target.empty()) return absl::InvalidArgumentError("--target is empty");
  Connection conn;
  auto timeout = ParseTimeout(options.timeout);
  if (!timeout.ok()) return timeout.status();
  conn.timeout_ = *timeout;

  if (!options.auth_token_file.empty()) {
    auto token = ReadFile("--auth-token-file", options.auth_token_file);
    if (!token.ok()) return token.status();
    conn.token_ = std::string(absl::StripAsciiWhitespace(*token));
    if (conn.token_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--auth-token-file: ", options.auth_token_file, " is empty"));
    }
  }

  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls_ca_file.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    auto pem = ReadFile("--tls-ca", options.tls_ca_file);
    if (!pem.ok()) return pem.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *std::move(pem);
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  if (absl::StartsWith(options.target, "dns:")) args.SetServiceConfigJSON(kRoundRobinConfig);
  conn.channel_ = grpc::CreateCustomChannel(options.target, creds, args);
  return conn;
}

void Connection::Prepare(grpc::ClientContext& context) const {
  // NOTE(client): plain metadata rather than call credentials: gRPC refuses
  // to send call credentials over a plaintext channel, and a server behind a
  // TLS-terminating proxy still needs the token.
  if (!token_.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token_));
  if (timeout_) context.set_deadline(absl::ToChronoTime(absl::Now() + *timeout_));
}

ConnectionOptions ConnectionOptionsFromFlags() {
  ConnectionOptions o;
  o.target = absl::GetFlag(FLAGS_target);
  o.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.timeout = absl::GetFlag(FLAGS_timeout);
  return o;
}

}  // namespace kvstream::client
