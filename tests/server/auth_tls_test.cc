// TLS (--tls-cert/--tls-key), the bearer token (--auth-token-file) and the
// request limits (--max-prompt-tokens, --max-message-bytes), each against the
// real server binary over loopback. Certificates come from
// deploy/make-certs.sh (the script README tells operators to use), made
// fresh in a temp dir per run.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/server/server_harness.h"

namespace kvstream::testing {
namespace {

namespace rv1 = grpc::reflection::v1alpha;

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs a shell command; returns its exit code and fills `output` (stdout+stderr).
int RunShell(const std::string& cmd, std::string* output = nullptr) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (f == nullptr) return -1;
  char buf[4096];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, got);
  const int st = pclose(f);
  if (output != nullptr) *output = out;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string Cli() { return BinaryDir() + "/kvstream"; }

// A fresh CA + server certificate (and a second, unrelated CA) in a temp dir.
std::string MakeCerts() {
  const std::string dir = ::testing::TempDir() + "/kvstream-certs-" + std::to_string(getpid());
  std::string out;
  EXPECT_EQ(RunShell("bash " + SourceDir() + "/deploy/make-certs.sh " + dir + " && bash " + SourceDir() +
                    "/deploy/make-certs.sh " + dir + "/other",
                &out),
            0)
      << out;
  return dir;
}

std::shared_ptr<grpc::ChannelCredentials> TrustingCa(const std::string& ca_file) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadText(ca_file);
  return grpc::SslCredentials(ssl);
}

// GetModelInfo with `authorization` metadata (none when empty).
grpc::Status ModelInfo(v1::Generation::Stub& stub, const std::string& authorization = "") {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
  v1::ModelInfo info;
  return stub.GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
}

// ---- TLS -------------------------------------------------------------------

class TlsServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeCerts());
    server_ = ServerProcess::Start({"--tls-cert=" + *dir_ + "/server.pem", "--tls-key=" + *dir_ + "/server.key"},
                                   120, TrustingCa(*dir_ + "/ca.pem"))
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    RunShell("rm -rf " + *dir_);
    delete dir_;
  }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "server did not start";
  }
  static ServerProcess* server_;
  static std::string* dir_;
};
ServerProcess* TlsServer::server_ = nullptr;
std::string* TlsServer::dir_ = nullptr;

TEST_F(TlsServer, ClientTrustingTheCaIsServed) {
  EXPECT_EQ(server_->Health(), "SERVING");
  StreamResult r = Generate(*server_->Stub(), GreedyRequest("The capital of France is", 4));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.token_ids.size(), 4u);
}

TEST_F(TlsServer, PlaintextClientFails) {
  auto stub = v1::Generation::NewStub(grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials()));
  const grpc::Status s = ModelInfo(*stub);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsServer, ClientTrustingAnotherCaFails) {
  auto stub = v1::Generation::NewStub(grpc::CreateChannel(server_->target(), TrustingCa(*dir_ + "/other/ca.pem")));
  const grpc::Status s = ModelInfo(*stub);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
}

TEST_F(TlsServer, CliHealthCheckNeedsTheCa) {
  // The container's HEALTHCHECK runs exactly this command.
  std::string out;
  EXPECT_EQ(RunShell(Cli() + " health --target=" + server_->target() + " --tls-ca=" + *dir_ + "/ca.pem --timeout=10", &out),
            0)
      << out;
  EXPECT_NE(out.find("SERVING"), std::string::npos) << out;
  EXPECT_NE(RunShell(Cli() + " health --target=" + server_->target() + " --timeout=5", &out), 0) << out;
}

TEST(TlsFlags, KeyWithoutCertIsRefusedAtStart) {
  std::string out;
  EXPECT_EQ(RunShell(BinaryDir() + "/kvstream-server --port=0 --tls-key=/nonexistent.key", &out), 1) << out;
  EXPECT_NE(out.find("--tls-cert and --tls-key must be given together"), std::string::npos) << out;
}

// ---- bearer token and limits -----------------------------------------------

constexpr char kToken[] = "s3cret-Token_value";

class TokenServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    token_file_ = new std::string(::testing::TempDir() + "/kvstream-token-" + std::to_string(getpid()));
    std::ofstream(*token_file_) << kToken << "\n";  // as `echo` writes it: the newline is not part of it
    server_ = ServerProcess::Start({"--auth-token-file=" + *token_file_, "--max-prompt-tokens=16",
                                    "--max-message-bytes=65536"})
                  .release();
  }
  static void TearDownTestSuite() {
    delete server_;
    std::remove(token_file_->c_str());
    delete token_file_;
  }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "server did not start";
  }
  static StreamResult GenerateWith(const std::string& authorization, const v1::GenerateRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    StreamResult r;
    auto reader = server_->Stub()->Generate(&ctx, req);
    v1::GenerateResponse resp;
    while (reader->Read(&resp)) {
      if (resp.has_delta()) r.token_ids.insert(r.token_ids.end(), resp.delta().token_ids().begin(),
                                               resp.delta().token_ids().end());
    }
    r.status = reader->Finish();
    return r;
  }
  static grpc::Status Reflect(const std::string& authorization, rv1::ServerReflectionResponse* resp,
                              const rv1::ServerReflectionRequest& req) {
    auto stub = rv1::ServerReflection::NewStub(server_->Channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!authorization.empty()) ctx.AddMetadata("authorization", authorization);
    auto stream = stub->ServerReflectionInfo(&ctx);
    stream->Write(req);
    stream->WritesDone();
    while (stream->Read(resp)) {}
    return stream->Finish();
  }
  static ServerProcess* server_;
  static std::string* token_file_;
};
ServerProcess* TokenServer::server_ = nullptr;
std::string* TokenServer::token_file_ = nullptr;

TEST_F(TokenServer, MissingTokenIsUnauthenticatedOnEveryRpc) {
  EXPECT_EQ(GenerateWith("", GreedyRequest("hi", 2)).status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const grpc::Status info = ModelInfo(*server_->Stub());
  EXPECT_EQ(info.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(info.error_message().find("authorization"), std::string::npos) << info.error_message();
  grpc::ClientContext ctx;
  v1::TokenizeRequest tr;
  tr.set_text("hi");
  v1::TokenizeResponse tresp;
  EXPECT_EQ(server_->Stub()->Tokenize(&ctx, tr, &tresp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  rv1::ServerReflectionRequest rr;
  rr.set_list_services("*");
  rv1::ServerReflectionResponse resp;
  EXPECT_EQ(Reflect("", &resp, rr).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(TokenServer, WrongTokenIsUnauthenticated) {
  for (const std::string& auth : {std::string("Bearer wrong"), std::string("Bearer ") + kToken + "x",
                                  std::string("Bearer s3cret"), std::string(kToken), std::string("Basic ") + kToken}) {
    EXPECT_EQ(GenerateWith(auth, GreedyRequest("hi", 2)).status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << auth;
    EXPECT_EQ(ModelInfo(*server_->Stub(), auth).error_code(), grpc::StatusCode::UNAUTHENTICATED) << auth;
  }
}

TEST_F(TokenServer, RightTokenIsServed) {
  StreamResult r = GenerateWith(std::string("Bearer ") + kToken, GreedyRequest("Hello", 3));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.token_ids.size(), 3u);
  EXPECT_TRUE(ModelInfo(*server_->Stub(), std::string("Bearer ") + kToken).ok());
  // The scheme name is case-insensitive (RFC 6750).
  EXPECT_TRUE(GenerateWith(std::string("bearer ") + kToken, GreedyRequest("Hello", 1)).status.ok());
}

TEST_F(TokenServer, ReflectionWithTokenDescribesTheApi) {
  rv1::ServerReflectionRequest rr;
  rr.set_file_containing_symbol("kvstream.v1.Generation");
  rv1::ServerReflectionResponse resp;
  const grpc::Status s = Reflect(std::string("Bearer ") + kToken, &resp, rr);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(resp.has_file_descriptor_response()) << resp.DebugString();
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(resp.file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.name(), "kvstream/v1/kvstream.proto");
  ASSERT_GE(file.service_size(), 1);
  EXPECT_EQ(file.service(0).name(), "Generation");
  rr.set_file_containing_symbol("no.such.Symbol");
  ASSERT_TRUE(Reflect(std::string("Bearer ") + kToken, &resp, rr).ok());
  EXPECT_EQ(resp.error_response().error_code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
}

TEST_F(TokenServer, HealthStaysOpenWithoutToken) {
  EXPECT_EQ(server_->Health(), "SERVING");
  std::string out;
  EXPECT_EQ(RunShell(Cli() + " health --target=" + server_->target() + " --timeout=10", &out), 0) << out;
}

TEST_F(TokenServer, CliSendsTheTokenFile) {
  std::string out;
  EXPECT_EQ(RunShell(Cli() + " tokenize --text=hello --target=" + server_->target() + " --auth-token-file=" +
                    *token_file_,
                &out),
            0)
      << out;
  EXPECT_NE(RunShell(Cli() + " tokenize --text=hello --target=" + server_->target(), &out), 0) << out;
  EXPECT_NE(out.find("UNAUTHENTICATED"), std::string::npos) << out;
}

TEST_F(TokenServer, PromptOverMaxPromptTokensIsInvalidArgumentNamingBoth) {
  v1::GenerateRequest req = GreedyRequest("", 2);
  for (int i = 0; i < 17; ++i) req.mutable_prompt_token_ids()->add_ids(100 + i);
  const grpc::Status s = GenerateWith(std::string("Bearer ") + kToken, req).status;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("17"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("16"), std::string::npos) << s.error_message();
  req.mutable_prompt_token_ids()->mutable_ids()->RemoveLast();  // 16 tokens fit
  EXPECT_TRUE(GenerateWith(std::string("Bearer ") + kToken, req).status.ok());
}

TEST_F(TokenServer, MessageOverMaxMessageBytesIsResourceExhausted) {
  const grpc::Status s = GenerateWith(std::string("Bearer ") + kToken, GreedyRequest(std::string(70000, 'a'), 1)).status;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
}

TEST(TokenFlags, UnreadableOrEmptyTokenFileIsRefusedAtStart) {
  std::string out;
  EXPECT_EQ(RunShell(BinaryDir() + "/kvstream-server --port=0 --auth-token-file=/nonexistent/token", &out), 1) << out;
  EXPECT_NE(out.find("--auth-token-file: cannot read"), std::string::npos) << out;
  const std::string empty = ::testing::TempDir() + "/kvstream-empty-token-" + std::to_string(getpid());
  std::ofstream(empty) << "  \n";
  EXPECT_EQ(RunShell(BinaryDir() + "/kvstream-server --port=0 --auth-token-file=" + empty, &out), 1) << out;
  EXPECT_NE(out.find("is empty"), std::string::npos) << out;
  std::remove(empty.c_str());
}

}  // namespace
}  // namespace kvstream::testing
