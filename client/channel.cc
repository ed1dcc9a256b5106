#include "client/channel.h"

#include <fstream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/flags.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace kvstream::client {
namespace {

// Round-robin over every resolved address: without it gRPC picks the first
// address that connects and sends everything there. The retry covers a pod
// that is draining (SIGTERM: the server answers UNAVAILABLE before any
// token) or gone before the DNS answer caught up: gRPC retries only until the
// first response message arrives, so a stream is never replayed half-way, and
// round_robin sends the retry to the next pod. RESOURCE_EXHAUSTED (queue
// full) is not retried: the client's own back-off decides that.
constexpr char kRoundRobinConfig[] = R"({
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "kvstream.v1.Generation"}],
    "retryPolicy": {
      "maxAttempts": 3,
      "initialBackoff": "0.2s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})";

// "host:port" or "[v6-address]:port", the port in 1..65535. Empty on success,
// else what is wrong (the caller names the target).
std::string HostPortProblem(absl::string_view endpoint) {
  if (absl::StrContains(endpoint, ',')) return "names more than one endpoint";
  absl::string_view host, port;
  if (absl::ConsumePrefix(&endpoint, "[")) {
    const size_t close = endpoint.find(']');
    if (close == absl::string_view::npos) return "has no ']' after the IPv6 address";
    host = endpoint.substr(0, close);
    endpoint.remove_prefix(close + 1);
    if (!absl::ConsumePrefix(&endpoint, ":")) return "needs a port";
    port = endpoint;
  } else {
    const size_t colon = endpoint.rfind(':');
    if (colon == absl::string_view::npos) return "needs a port";
    host = endpoint.substr(0, colon);
    port = endpoint.substr(colon + 1);
    if (absl::StrContains(host, ':')) return "needs brackets around an IPv6 address ([::1]:50051)";
  }
  if (host.empty()) return "has no host name";
  if (port.empty()) return "needs a port";
  int n = 0;
  const bool digits = port.find_first_not_of("0123456789") == absl::string_view::npos;
  if (!digits || !absl::SimpleAtoi(port, &n) || n < 1 || n > 65535) {
    return absl::StrCat("has port '", port, "', not a number in 1..65535");
  }
  return "";
}

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

absl::StatusOr<ChannelPlan> PlanChannel(absl::string_view target) {
  if (target.empty()) return absl::InvalidArgumentError("--target is empty");
  ChannelPlan plan;
  absl::string_view rest = target;
  if (!absl::ConsumePrefix(&rest, "dns:")) return plan;
  // dns:[//authority/]host:port (gRPC's naming doc); the authority, a DNS
  // server to ask, may be empty: dns:///host:port.
  if (absl::ConsumePrefix(&rest, "//")) {
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--target '", target, "': write dns:///host:port (three slashes when no DNS server is named)"));
    }
    rest.remove_prefix(slash + 1);
  }
  if (std::string problem = HostPortProblem(rest); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--target '", target, "' ", problem,
        problem == "needs a port" ? " (gRPC's DNS resolver would try 443), e.g. dns:///kvstream:50051" : ""));
  }
  plan.round_robin = true;
  plan.service_config_json = kRoundRobinConfig;
  return plan;
}

absl::StatusOr<Connection> Connection::Open(const ConnectionOptions& options) {
  auto plan = PlanChannel(options.target);
  if (!plan.ok()) return plan.status();
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
  if (!plan->service_config_json.empty()) args.SetServiceConfigJSON(plan->service_config_json);
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
