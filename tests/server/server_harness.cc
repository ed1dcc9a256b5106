#include "tests/server/server_harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace kvstream::testing {

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::vector<std::string>& args, int timeout_s) {
  return Start(args, timeout_s, nullptr);
}

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::vector<std::string>& args, int timeout_s,
                                                    std::shared_ptr<grpc::ChannelCredentials> creds) {
  auto p = std::unique_ptr<ServerProcess>(new ServerProcess());
  p->creds_ = std::move(creds);
  p->log_path_ = ::testing::TempDir() + "/kvstream-server-" + std::to_string(getpid()) + "-" +
                 std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".log";
  std::vector<std::string> argv_s = {BinaryDir() + "/kvstream-server", "--port=0",
                                     "--model=" + DefaultModelPath()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  p->pid_ = fork();
  if (p->pid_ == 0) {
    int fd = open(p->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  const std::regex re("listening on [0-9.]+:([0-9]+)");
  while (std::chrono::steady_clock::now() < until) {
    std::smatch m;
    const std::string log = p->Log();
    if (p->port_ == 0 && std::regex_search(log, m, re)) p->port_ = std::stoi(m[1]);
    if (p->port_ != 0 && p->Health() == "SERVING") return p;
    int st = 0;
    if (waitpid(p->pid_, &st, WNOHANG) == p->pid_) {
      p->exited_ = true;
      ADD_FAILURE() << "kvstream-server exited early:\n" << log;
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "kvstream-server not SERVING after " << timeout_s << " s:\n" << p->Log();
  return nullptr;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGTERM);
    if (Wait(30) == -1000) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::remove(log_path_.c_str());
}

std::shared_ptr<grpc::Channel> ServerProcess::Channel() const {
  return grpc::CreateChannel(target(), creds_ ? creds_ : grpc::InsecureChannelCredentials());
}

std::unique_ptr<v1::Generation::Stub> ServerProcess::Stub() const { return v1::Generation::NewStub(Channel()); }

std::string ServerProcess::Health() const {
  auto stub = grpc::health::v1::Health::NewStub(Channel());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) return "error: " + s.error_message();
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status());
}

int64_t ServerProcess::RssBytes() const {
  std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

std::string ServerProcess::Log() const {
  std::ifstream f(log_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void ServerProcess::Signal(int sig) const { kill(pid_, sig); }

int ServerProcess::Wait(int timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      exited_ = true;
      return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1000;
}

StreamResult Generate(v1::Generation::Stub& stub, const v1::GenerateRequest& req, int deadline_ms) {
  StreamResult r;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  auto reader = stub.Generate(&ctx, req);
  v1::GenerateResponse resp;
  while (reader->Read(&resp)) {
    if (resp.has_delta()) {
      r.text += resp.delta().text();
      r.token_ids.insert(r.token_ids.end(), resp.delta().token_ids().begin(), resp.delta().token_ids().end());
      for (const auto& lp : resp.delta().logprobs()) r.logprobs.push_back(lp.logprob());
    } else if (resp.has_result()) {
      r.result = resp.result();
    }
    r.responses.push_back(resp);
  }
  r.status = reader->Finish();
  return r;
}

v1::GenerateRequest GreedyRequest(const std::string& prompt, int n) {
  v1::GenerateRequest req;
  req.set_prompt(prompt);
  req.mutable_sampling()->set_temperature(0.0f);
  req.mutable_sampling()->set_max_new_tokens(n);
  req.mutable_sampling()->set_ignore_eos(true);
  return req;
}

int64_t KvBytesInUse(v1::Generation::Stub& stub) {
  grpc::ClientContext ctx;
  v1::GetModelInfoRequest req;
  v1::ModelInfo info;
  if (!stub.GetModelInfo(&ctx, req, &info).ok()) return -1;
  return info.kv_bytes_in_use();
}

}  // namespace kvstream::testing
