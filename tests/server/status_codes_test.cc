// Every row of api.md's status table, triggered over gRPC against the real
// server and checked for code and message text.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/server/server_harness.h"

namespace kvstream::testing {
namespace {

void ExpectStatus(const grpc::Status& s, grpc::StatusCode code, const std::vector<std::string>& needles) {
  EXPECT_EQ(s.error_code(), code) << s.error_message();
  for (const auto& n : needles) EXPECT_NE(s.error_message().find(n), std::string::npos) << "'" << n << "' not in: " << s.error_message();
}

class StatusCodes : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = ServerProcess::Start().release(); }
  static void TearDownTestSuite() { delete server_; }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "server did not start";
  }
  static ServerProcess* server_;
};
ServerProcess* StatusCodes::server_ = nullptr;

TEST_F(StatusCodes, FieldOutOfRangeNamesFieldAndRange) {
  v1::GenerateRequest req = GreedyRequest("hi", 4);
  req.mutable_sampling()->set_top_p(1.5f);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT, {"sampling.top_p", "(0, 1]", "1.5"});
  req = GreedyRequest("hi", 4);
  req.set_top_logprobs(21);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT, {"top_logprobs", "[0, 20]", "21"});
  req = GreedyRequest("hi", 0);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT, {"sampling.max_new_tokens", "[1, 8192]"});
  req = GreedyRequest("hi", 4);
  req.mutable_sampling()->set_temperature(-1.0f);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT, {"sampling.temperature", ">= 0"});
}

TEST_F(StatusCodes, EmptyInput) {
  v1::GenerateRequest req;
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT, {"input is empty"});
  req.set_prompt("");
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT, {"prompt is empty"});
}

TEST_F(StatusCodes, UnknownTokenId) {
  v1::GenerateRequest req = GreedyRequest("", 4);
  req.mutable_prompt_token_ids()->add_ids(12);
  req.mutable_prompt_token_ids()->add_ids(49152);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT,
               {"prompt_token_ids[1]", "[0, 49152)", "49152"});
}

TEST_F(StatusCodes, PromptPlusMaxNewOverContextNamesBothNumbers) {
  v1::GenerateRequest req = GreedyRequest("", 200);
  for (int i = 0; i < 8100; ++i) req.mutable_prompt_token_ids()->add_ids(100 + i % 50);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT, {"8100", "200", "8192"});
}

TEST_F(StatusCodes, LaserKvKnobOutOfRangeNamesFieldAndRange) {
  v1::GenerateRequest req = GreedyRequest("hi", 4);
  req.mutable_kv_compression()->mutable_laser_kv()->set_num_tables(1);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT,
               {"kv_compression.laser_kv.num_tables"});
}

TEST_F(StatusCodes, AkvKnobOutOfRangeNamesFieldAndRange) {
  v1::GenerateRequest req = GreedyRequest("hi", 4);
  req.mutable_kv_compression()->mutable_akv()->set_hot_budget(8);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT,
               {"kv_compression.akv.hot_budget", "[16, 65536]", "8"});
  req.mutable_kv_compression()->mutable_akv()->Clear();
  req.mutable_kv_compression()->mutable_akv()->set_key_quant_mode(v1::AkvConfig::AKV_KEY_QUANT_MODE_PER_CHANNEL);
  ExpectStatus(Generate(*server_->Stub(), req).status, grpc::StatusCode::INVALID_ARGUMENT,
               {"kv_compression.akv.key_quant_mode", "PER_TOKEN"});
}

TEST_F(StatusCodes, DeadlinePassedIsDeadlineExceeded) {
  StreamResult r = Generate(*server_->Stub(), GreedyRequest("Tell me a long story", 4000), /*deadline_ms=*/400);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_F(StatusCodes, ClientCancelIsCancelled) {
  grpc::ClientContext ctx;
  auto stub = server_->Stub();
  auto reader = stub->Generate(&ctx, GreedyRequest("Count to one thousand:", 4000));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ctx.TryCancel();
  while (reader->Read(&resp)) {}
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST(StatusCodesBudget, NeverFitsIsResourceExhaustedWithBytes) {
  // 2 MB of KV: a dense fp32 token of this model takes 46,080 bytes.
  auto server = ServerProcess::Start({"--kv-budget-bytes=2000000"});
  ASSERT_NE(server, nullptr);
  StreamResult r = Generate(*server->Stub(), GreedyRequest("hello there", 200));
  ExpectStatus(r.status, grpc::StatusCode::RESOURCE_EXHAUSTED, {"2000000", "KV bytes"});
  // A request that fits is served.
  EXPECT_TRUE(Generate(*server->Stub(), GreedyRequest("hello", 4)).status.ok());
}

TEST(StatusCodesQueue, QueueFullIsResourceExhausted) {
  auto server = ServerProcess::Start({"--max-batch=1", "--max-queue=1"});
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  grpc::ClientContext ca, cb;
  auto a = stub->Generate(&ca, GreedyRequest("first", 4000));
  v1::GenerateResponse resp;
  ASSERT_TRUE(a->Read(&resp));  // A is running
  auto b = stub->Generate(&cb, GreedyRequest("second", 4000));
  for (int i = 0; i < 200; ++i) {  // wait until B is queued
    grpc::ClientContext c;
    v1::ModelInfo info;
    if (stub->GetModelInfo(&c, v1::GetModelInfoRequest(), &info).ok() && info.queued_requests() == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  StreamResult c = Generate(*stub, GreedyRequest("third", 4));
  ExpectStatus(c.status, grpc::StatusCode::RESOURCE_EXHAUSTED, {"queue full", "--max-queue=1"});
  ca.TryCancel();
  cb.TryCancel();
  while (a->Read(&resp)) {}
  while (b->Read(&resp)) {}
  a->Finish();
  b->Finish();
}

TEST(StatusCodesShutdown, SigtermDrainsRunningAndRefusesNew) {
  auto server = ServerProcess::Start();
  ASSERT_NE(server, nullptr);
  auto stub = server->Stub();
  grpc::ClientContext ctx;
  auto running = stub->Generate(&ctx, GreedyRequest("A story:", 120));
  v1::GenerateResponse resp;
  ASSERT_TRUE(running->Read(&resp));
  server->Signal(SIGTERM);
  // The drain starts by reporting NOT_SERVING; from then on, while the
  // running request still drains, new work is refused with UNAVAILABLE.
  // (Once the drain is over gRPC itself resets late streams, which clients
  // may see as CANCELLED; the running request keeps the drain open here.)
  std::string health;
  for (int i = 0; i < 500 && (health = server->Health()) == "SERVING"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(health, "NOT_SERVING") << server->Log();
  grpc::Status refused = Generate(*stub, GreedyRequest("late", 2)).status;
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_NE(refused.error_message().find("shutting down"), std::string::npos) << refused.error_message();
  bool got_result = false;
  while (running->Read(&resp)) got_result |= resp.has_result();
  EXPECT_TRUE(running->Finish().ok());
  EXPECT_TRUE(got_result) << "the running request finished during the drain";
  EXPECT_EQ(server->Wait(60), 0);
}

}  // namespace
}  // namespace kvstream::testing
