// --target rules (client/channel.h PlanChannel) and the channel they build:
// a dns:/// target gets round_robin and the UNAVAILABLE retry (what a
// Kubernetes headless Service needs, deploy/k8s/README.md), any other target
// keeps gRPC's pick_first. The last test connects to an in-process gRPC
// server to show the policy really is the channel's, not just a string.
#include <chrono>
#include <memory>
#include <string>

#include "client/channel.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kvstream::client {
namespace {

using ::testing::HasSubstr;

TEST(PlanChannel, DnsTargetsBalanceRoundRobinWithUnavailableRetried) {
  for (const char* target : {"dns:///kvstream-headless.default.svc.cluster.local:50051", "dns:///10.0.0.7:50051",
                             "dns:///[::1]:50051", "dns://10.96.0.10:53/kvstream:50051", "dns:kvstream:50051"}) {
    auto plan = PlanChannel(target);
    ASSERT_TRUE(plan.ok()) << target << ": " << plan.status();
    EXPECT_TRUE(plan->round_robin) << target;
    const auto config = nlohmann::json::parse(plan->service_config_json);
    EXPECT_EQ(config["loadBalancingConfig"][0].begin().key(), "round_robin");
    const auto& method = config["methodConfig"][0];
    EXPECT_EQ(method["name"][0]["service"], "kvstream.v1.Generation");
    EXPECT_EQ(method["retryPolicy"]["retryableStatusCodes"], nlohmann::json::array({"UNAVAILABLE"}));
    EXPECT_GE(method["retryPolicy"]["maxAttempts"].get<int>(), 2);
  }
}

TEST(PlanChannel, OtherTargetsKeepGrpcDefaults) {
  for (const char* target : {"127.0.0.1:50051", "kvstream:50051", "ipv4:10.0.0.1:50051,10.0.0.2:50051",
                             "unix:/tmp/kvstream.sock", "localhost"}) {
    auto plan = PlanChannel(target);
    ASSERT_TRUE(plan.ok()) << target << ": " << plan.status();
    EXPECT_FALSE(plan->round_robin) << target;
    EXPECT_EQ(plan->service_config_json, "") << target;
  }
}

TEST(PlanChannel, MalformedDnsTargetsAreUsageErrorsNamingTheTarget) {
  struct Case {
    const char* target;
    const char* says;
  };
  for (const Case& c : {Case{"", "--target is empty"}, Case{"dns:///kvstream", "443"},
                        Case{"dns:///kvstream:", "needs a port"}, Case{"dns:///:50051", "no host"},
                        Case{"dns:///kvstream:http", "1..65535"}, Case{"dns:///kvstream:70000", "1..65535"},
                        Case{"dns:///kvstream:+80", "1..65535"}, Case{"dns://kvstream:50051", "three slashes"},
                        Case{"dns:///::1:50051", "brackets"}, Case{"dns:///[::1]50051", "needs a port"},
                        Case{"dns:///[::1:50051", "']'"}, Case{"dns:///a:1,b:2", "more than one"}}) {
    auto plan = PlanChannel(c.target);
    ASSERT_FALSE(plan.ok()) << c.target;
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << c.target;
    EXPECT_THAT(std::string(plan.status().message()), HasSubstr(c.says)) << c.target;
    if (*c.target != '\0') {
      EXPECT_THAT(std::string(plan.status().message()), HasSubstr(c.target));
    }
    // Connection::Open refuses it the same way, before any channel exists.
    ConnectionOptions o;
    o.target = c.target;
    EXPECT_EQ(Connection::Open(o).status(), plan.status()) << c.target;
  }
}

TEST(Connection, DnsTargetConnectsWithRoundRobinAndTheRetryConfig) {
  // A callback service so the server needs no completion queue of ours
  // (the default one answers every method UNIMPLEMENTED: only the connection
  // matters here).
  grpc::CallbackGenericService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);

  ConnectionOptions o;
  o.target = "dns:///127.0.0.1:" + std::to_string(port);
  auto conn = Connection::Open(o);
  ASSERT_TRUE(conn.ok()) << conn.status();
  const auto& channel = conn->channel();
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20)));
  EXPECT_EQ(channel->GetLoadBalancingPolicyName(), "round_robin");
  EXPECT_THAT(channel->GetServiceConfigJSON(), HasSubstr("retryPolicy"));

  // The plain target next to it stays pick_first.
  o.target = "127.0.0.1:" + std::to_string(port);
  auto plain = Connection::Open(o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(plain->channel()->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20)));
  EXPECT_EQ(plain->channel()->GetLoadBalancingPolicyName(), "pick_first");
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace kvstream::client
