// Generate, Tokenize, GetModelInfo, health and reflection against the real
// server binary over loopback gRPC.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <thread>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/server/server_harness.h"

namespace kvstream::testing {
namespace {

class GenerateRpc : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = ServerProcess::Start().release(); }
  static void TearDownTestSuite() { delete server_; }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "server did not start";
  }
  static ServerProcess* server_;
};
ServerProcess* GenerateRpc::server_ = nullptr;

std::string RunKvstreamRun(const std::string& prompt, int n) {
  const std::string cmd = BinaryDir() + "/kvstream-run --model=" + DefaultModelPath() + " --prompt='" + prompt +
                          "' --max-new-tokens=" + std::to_string(n) +
                          " --temperature=0 --ignore-eos 2>/dev/null";
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t got;
  while ((got = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), got);
  pclose(f);
  // Text, then "\n", then the figures line.
  const size_t cut = out.rfind("\nprompt_tokens=");
  return cut == std::string::npos ? out : out.substr(0, cut);
}

TEST_F(GenerateRpc, StreamedTextEqualsKvstreamRun) {
  const std::string prompt = "The three primary colours are";
  StreamResult r = Generate(*server_->Stub(), GreedyRequest(prompt, 24));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_TRUE(r.result.has_value());
  EXPECT_EQ(r.token_ids.size(), 24u);
  EXPECT_GT(r.responses.size(), 2u) << "tokens must stream, not arrive in one message";
  EXPECT_EQ(r.text, RunKvstreamRun(prompt, 24));
  EXPECT_EQ(r.result->usage().completion_tokens(), 24);
  EXPECT_EQ(r.result->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(r.result->cache().strategy(), "dense");
  EXPECT_GT(r.result->cache().kv_bytes_device(), 0);
  EXPECT_GT(r.result->timings().ttft_ms(), 0);
  EXPECT_FALSE(r.result->request_id().empty());
}

TEST_F(GenerateRpc, LogprobsPresentWhenAsked) {
  v1::GenerateRequest req = GreedyRequest("Hello", 6);
  req.set_return_logprobs(true);
  req.set_top_logprobs(3);
  StreamResult r = Generate(*server_->Stub(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_EQ(r.logprobs.size(), 6u);
  for (const auto& resp : r.responses) {
    if (!resp.has_delta()) continue;
    for (const auto& lp : resp.delta().logprobs()) {
      EXPECT_LE(lp.logprob(), 0.0f);
      ASSERT_EQ(lp.top_size(), 3);
      EXPECT_EQ(lp.top(0).token_id(), lp.token_id()) << "greedy picks the best";
      EXPECT_NEAR(lp.top(0).logprob(), lp.logprob(), 1e-6);
    }
  }
  StreamResult plain = Generate(*server_->Stub(), GreedyRequest("Hello", 6));
  EXPECT_TRUE(plain.logprobs.empty());
}

TEST_F(GenerateRpc, SameSeedSameTokens) {
  v1::GenerateRequest req = GreedyRequest("Once upon a time", 16);
  req.mutable_sampling()->set_temperature(1.0f);
  req.mutable_sampling()->set_seed(1234);
  StreamResult a = Generate(*server_->Stub(), req);
  StreamResult b = Generate(*server_->Stub(), req);
  req.mutable_sampling()->set_seed(99);
  StreamResult c = Generate(*server_->Stub(), req);
  ASSERT_TRUE(a.status.ok() && b.status.ok() && c.status.ok());
  EXPECT_EQ(a.token_ids, b.token_ids);
  EXPECT_NE(a.token_ids, c.token_ids);
}

TEST_F(GenerateRpc, SixteenConcurrentStreamsAllCorrect) {
  std::vector<std::string> prompts;
  for (int i = 0; i < 16; ++i) prompts.push_back("Item " + std::to_string(i) + ": the number after " + std::to_string(i * 7) + " is");
  std::vector<std::vector<int32_t>> alone(16), together(16);
  for (int i = 0; i < 16; ++i) alone[i] = Generate(*server_->Stub(), GreedyRequest(prompts[i], 12)).token_ids;
  std::vector<std::thread> threads;
  std::vector<grpc::Status> status(16);
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      StreamResult r = Generate(*server_->Stub(), GreedyRequest(prompts[i], 12));
      status[i] = r.status;
      together[i] = r.token_ids;
    });
  }
  for (auto& t : threads) t.join();
  grpc::ClientContext ci;
  v1::ModelInfo info;
  ASSERT_TRUE(server_->Stub()->GetModelInfo(&ci, v1::GetModelInfoRequest(), &info).ok());
  // CPU fp32: batching changes nothing. CUDA bf16: a batch of 16 runs other
  // GEMM kernels than a batch of 1, whose roundings can flip a near-tie
  // (as in every bf16 server); most streams must still match exactly.
  int identical = 0;
  for (int i = 0; i < 16; ++i) {
    EXPECT_TRUE(status[i].ok()) << i << ": " << status[i].error_message();
    if (info.device() == "cpu") EXPECT_EQ(together[i], alone[i]) << "stream " << i;
    identical += together[i] == alone[i];
  }
  std::printf("[concurrency] %d/16 streams identical to their solo run on %s\n", identical, info.device().c_str());
  EXPECT_GE(identical, 12);
}

TEST_F(GenerateRpc, ChatAndTokenIdsInputs) {
  v1::GenerateRequest req = GreedyRequest("", 8);
  req.clear_prompt();
  auto* chat = req.mutable_chat();
  auto* m = chat->add_messages();
  m->set_role("user");
  m->set_content("What is the capital of France?");
  chat->set_add_generation_prompt(true);
  StreamResult r = Generate(*server_->Stub(), req);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_NE(r.text.find("Paris"), std::string::npos) << r.text;

  v1::GenerateRequest ids = GreedyRequest("", 4);
  for (int id : {504, 3575, 282, 4649, 314}) ids.mutable_prompt_token_ids()->add_ids(id);
  EXPECT_TRUE(Generate(*server_->Stub(), ids).status.ok());
}

TEST_F(GenerateRpc, TokenizeAndModelInfo) {
  auto stub = server_->Stub();
  grpc::ClientContext c1;
  v1::TokenizeRequest tr;
  tr.set_text("Hello world");
  v1::TokenizeResponse tresp;
  ASSERT_TRUE(stub->Tokenize(&c1, tr, &tresp).ok());
  ASSERT_EQ(tresp.token_ids_size(), tresp.pieces_size());
  std::string joined;
  for (const auto& p : tresp.pieces()) joined += p;
  EXPECT_EQ(joined, "Hello world");

  grpc::ClientContext c2;
  v1::ModelInfo info;
  ASSERT_TRUE(stub->GetModelInfo(&c2, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.n_layers(), 30);
  EXPECT_EQ(info.n_heads(), 9);
  EXPECT_EQ(info.n_kv_heads(), 3);
  EXPECT_EQ(info.head_dim(), 64);
  EXPECT_EQ(info.vocab_size(), 49152);
  EXPECT_EQ(info.context_length(), 8192);
  EXPECT_TRUE(info.device() == "cpu" || info.device() == "cuda:0") << info.device();
  EXPECT_EQ(info.architecture(), "llama");
  EXPECT_GT(info.kv_budget_bytes(), 0);
  ASSERT_GE(info.strategies_size(), 1);
}

TEST_F(GenerateRpc, HealthServingAndReflectionListsGeneration) {
  EXPECT_EQ(server_->Health(), "SERVING");
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(server_->Channel());
  grpc::ClientContext ctx;
  auto stream = stub->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest req;
  req.set_list_services("*");
  ASSERT_TRUE(stream->Write(req));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_NE(std::find(names.begin(), names.end(), "kvstream.v1.Generation"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "grpc.health.v1.Health"), names.end());
  while (stream->Read(&resp)) {}
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace kvstream::testing
