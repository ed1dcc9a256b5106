// Starts the real kvstream-server binary on a loopback port and talks to it
// over gRPC, as any client would.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "kvstream/v1/kvstream.grpc.pb.h"
#include "tests/test_paths.h"

namespace kvstream::testing {

class ServerProcess {
 public:
  // Spawns build/kvstream-server --port=0 <args>, waits for the port in its
  // log and for health SERVING (at most `timeout_s`). Null (with a test
  // failure) if it does not come up.
  static std::unique_ptr<ServerProcess> Start(const std::vector<std::string>& args = {}, int timeout_s = 120);
  // The same, with the credentials every channel to it uses (TLS servers).
  static std::unique_ptr<ServerProcess> Start(const std::vector<std::string>& args, int timeout_s,
                                              std::shared_ptr<grpc::ChannelCredentials> creds);
  ~ServerProcess();

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  int pid() const { return pid_; }
  std::unique_ptr<v1::Generation::Stub> Stub() const;
  std::shared_ptr<grpc::Channel> Channel() const;
  // grpc.health.v1 status ("SERVING", "NOT_SERVING", or the RPC error).
  std::string Health() const;
  int64_t RssBytes() const;       // VmRSS of the server process
  std::string Log() const;        // everything it printed so far
  void Signal(int sig) const;
  // Waits for exit; returns the exit code (or -signal).
  int Wait(int timeout_s = 60);

 private:
  int pid_ = -1;
  int port_ = 0;
  std::string log_path_;
  bool exited_ = false;
  std::shared_ptr<grpc::ChannelCredentials> creds_;  // null = plaintext
};

struct StreamResult {
  grpc::Status status;
  std::vector<v1::GenerateResponse> responses;
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;
  std::optional<v1::GenerateResult> result;
};

// Runs one Generate to its end.
StreamResult Generate(v1::Generation::Stub& stub, const v1::GenerateRequest& req, int deadline_ms = 120000);

// A greedy request for `prompt` with `n` new tokens.
v1::GenerateRequest GreedyRequest(const std::string& prompt, int n);

// kv_bytes_in_use from GetModelInfo (-1 on error).
int64_t KvBytesInUse(v1::Generation::Stub& stub);

}  // namespace kvstream::testing
