// The server process: gRPC (Generation, health, reflection), the model load
// in the background (health NOT_SERVING until it is done), the scheduler,
// /metrics, and the SIGTERM drain.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "server/generation_service.h"
#include "server/reflection_service.h"
#include "server/server_state.h"

namespace kvstream::server {

struct ServerOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 50051;
  std::string device = "auto";
  int64_t kv_budget_bytes = 0;       // 0 = what fits beside the weights
  int64_t host_kv_budget_bytes = 0;  // host-memory tiers (AKV cold); 0 = 1/4 of free RAM
  int32_t max_batch = 64;
  int32_t max_queue = 256;
  int64_t prefill_chunk = 512;
  int metrics_port = 0;              // 0 = off
  bool allow_entmax_attention = false;
  std::string tls_cert, tls_key, auth_token_file;
  int64_t max_message_bytes = 16 << 20;  // largest request message gRPC accepts
  int64_t max_prompt_tokens = 0;         // 0 = only the model context limits a prompt
  int threads = 0;
  std::string synthetic;             // architecture name for random weights
  int tensor_parallel = 1;           // model shards (EngineOptions::tensor_parallel)
};

class ServerApp {
 public:
  explicit ServerApp(ServerOptions options);
  ~ServerApp();

  // Binds the port and starts loading the model; returns once gRPC listens.
  absl::Status Start();
  // Blocks until the model is loaded (OK) or failed to load.
  absl::Status WaitLoaded();
  // Drain: health NOT_SERVING, new requests UNAVAILABLE, running ones finish.
  void Shutdown();
  int bound_port() const { return bound_port_; }

 private:
  void Load();

  ServerOptions options_;
  ServerState state_;
  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<ReflectionService> reflection_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> scheduler_;
  std::thread loader_;
  std::mutex load_mu_;
  std::condition_variable load_cv_;
  bool load_done_ = false;
  absl::Status load_status_;
  int bound_port_ = 0;
  struct MetricsHttp;
  std::unique_ptr<MetricsHttp> metrics_http_;
};

}  // namespace kvstream::server
