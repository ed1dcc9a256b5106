// --target rules (client/channel.h PlanChannel) and the channel they build:
// a dns:/// target gets round_robin and the UNAVAILABLE retry (what a
// Kubernetes headless Service needs, deploy/k8s/README.md), any other target
// keeps gRPC's pick_first. The last test connects to an in-process gRPC
// server to show the policy really is the channel's, not just a string.
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "client/channel.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
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

// Answers UNAVAILABLE before reading anything while fail_next > 0 (counting
// it down), as a draining kvstream-server does, else OK with an empty
// message. Counts the calls it sees.
class DrainingThenServing : public grpc::CallbackGenericService {
 public:
  std::atomic<int> fail_next{0};
  std::atomic<int> calls{0};

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    calls.fetch_add(1);
    return new Reactor(fail_next.fetch_sub(1) > 0);
  }

 private:
  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    explicit Reactor(bool fail) {
      if (fail) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"));
      } else {
        StartRead(&request_);
      }
    }
    void OnReadDone(bool ok) override {
      if (!ok) return Finish(grpc::Status(grpc::StatusCode::INTERNAL, "no request"));
      grpc::Slice empty{std::string()};
      response_ = grpc::ByteBuffer(&empty, 1);  // a default ByteBuffer is no message at all
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnDone() override { delete this; }

   private:
    grpc::ByteBuffer request_, response_;
  };
};

// One unary call to `method` through the connection's channel.
grpc::Status Call(const Connection& conn, const std::string& method) {
  grpc::GenericStub stub(conn.channel());
  grpc::ClientContext context;
  conn.Prepare(context);
  grpc::Slice slice(std::string(""));
  grpc::ByteBuffer request(&slice, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  return done.get_future().get();
}

TEST(Connection, DnsTargetRetriesUnavailableOnGenerationOnly) {
  DrainingThenServing service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ConnectionOptions o;
  o.timeout = "20";
  o.target = "dns:///127.0.0.1:" + std::to_string(port);
  auto conn = Connection::Open(o);
  ASSERT_TRUE(conn.ok()) << conn.status();

  // kvstream.v1.Generation: the UNAVAILABLE answer is retried, the second attempt succeeds.
  service.fail_next = 1;
  const grpc::Status retried = Call(*conn, "/kvstream.v1.Generation/Tokenize");
  EXPECT_TRUE(retried.ok()) << retried.error_message();
  EXPECT_EQ(service.calls.load(), 2);

  // Other services are not retried: a health check must see a draining pod as it is.
  service.fail_next = 1;
  service.calls = 0;
  EXPECT_EQ(Call(*conn, "/grpc.health.v1.Health/Check").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service.calls.load(), 1);

  // A plain target keeps gRPC's default: no retry.
  o.target = "127.0.0.1:" + std::to_string(port);
  auto plain = Connection::Open(o);
  ASSERT_TRUE(plain.ok()) << plain.status();
  service.fail_next = 1;
  service.calls = 0;
  EXPECT_EQ(Call(*plain, "/kvstream.v1.Generation/Tokenize").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(service.calls.load(), 1);
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace kvstream::client
