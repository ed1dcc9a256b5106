#include "server/server_app.h"

#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "server/reflection_service.h"

namespace kvstream::server {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// MemAvailable from /proc/meminfo in bytes (0 if unknown).
int64_t AvailableRamBytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

}  // namespace

struct ServerApp::MetricsHttp {
  httplib::Server http;
  std::thread thread;
};

ServerApp::ServerApp(ServerOptions options) : options_(std::move(options)) {}

ServerApp::~ServerApp() {
  Shutdown();
  if (loader_.joinable()) loader_.join();
}

absl::Status ServerApp::Start() {
  if (!options_.auth_token_file.empty()) {
    auto auth = TokenAuth::FromFile(options_.auth_token_file);
    if (!auth.ok()) return auth.status();
    state_.auth = *std::move(auth);
  }
  if (options_.max_message_bytes < 1024 || options_.max_message_bytes > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("--max-message-bytes must be in [1024, ", INT32_MAX, "] (got ",
                                                   options_.max_message_bytes, ")"));
  }
  if (options_.max_prompt_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-prompt-tokens must be >= 0 (got ", options_.max_prompt_tokens, ")"));
  }
  state_.max_prompt_tokens = options_.max_prompt_tokens;
  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!options_.tls_cert.empty() || !options_.tls_key.empty()) {
    if (options_.tls_cert.empty() || options_.tls_key.empty()) {
      return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
    }
    auto cert = ReadFile(options_.tls_cert, "--tls-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadFile(options_.tls_key, "--tls-key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  service_ = std::make_unique<GenerationService>(state_);
  reflection_ = std::make_unique<ReflectionService>(
      std::vector<std::string>{v1::Generation::service_full_name(), "grpc.health.v1.Health",
                               grpc::reflection::v1alpha::ServerReflection::service_full_name()},
      state_.auth);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(options_.host, ":", options_.port), creds, &bound_port_);
  builder.RegisterService(service_.get());
  builder.RegisterService(reflection_.get());
  // A larger request gets RESOURCE_EXHAUSTED from gRPC before it is parsed.
  builder.SetMaxReceiveMessageSize(static_cast<int>(options_.max_message_bytes));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || bound_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.host, ":", options_.port));
  }
  server_->GetHealthCheckService()->SetServingStatus(false);
  spdlog::info("listening on {}:{} (health NOT_SERVING while the model loads; {}; {})", options_.host, bound_port_,
               options_.tls_cert.empty() ? "plaintext" : "TLS",
               state_.auth.enabled() ? "bearer token required" : "no auth");

  if (options_.metrics_port > 0) {
    metrics_http_ = std::make_unique<MetricsHttp>();
    metrics_http_->http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      Scheduler* s = state_.scheduler.load();
      res.set_content(state_.metrics.Render(s ? s->Stats() : SchedulerStats{}),
                      "text/plain; version=0.0.4; charset=utf-8");
    });
    if (!metrics_http_->http.bind_to_port(options_.host, options_.metrics_port)) {
      return absl::UnavailableError(absl::StrCat("cannot listen for metrics on ", options_.host, ":",
                                                 options_.metrics_port));
    }
    metrics_http_->thread = std::thread([this] { metrics_http_->http.listen_after_bind(); });
    spdlog::info("metrics on http://{}:{}/metrics", options_.host, options_.metrics_port);
  }
  loader_ = std::thread([this] { Load(); });
  return absl::OkStatus();
}

void ServerApp::Load() {
  EngineOptions eo;
  eo.model_path = options_.model;
  eo.device = options_.device;
  eo.threads = options_.threads;
  eo.synthetic = options_.synthetic;
  eo.tensor_parallel = options_.tensor_parallel;
  eo.prefill_chunk = options_.prefill_chunk;
  eo.kv_pool_bytes = options_.kv_budget_bytes;
  spdlog::info("loading model {} (device={})", options_.model, options_.device);
  auto engine = Engine::Load(eo);
  absl::Status status = engine.status();
  if (engine.ok()) {
    engine_ = std::move(*engine);
    SchedulerOptions so;
    so.max_batch = options_.max_batch;
    so.max_queue = options_.max_queue;
    so.prefill_chunk = options_.prefill_chunk;
    so.kv_budget_bytes = options_.kv_budget_bytes;
    if (so.kv_budget_bytes <= 0) {
      // What fits beside the weights: the CUDA engine's page pool (sized from
      // device memory at load), else half of the RAM still available.
      so.kv_budget_bytes = engine_->kv_pool_bytes() > 0 ? engine_->kv_pool_bytes()
                                                         : std::max<int64_t>(AvailableRamBytes() / 2, 64ll << 20);
    }
    scheduler_ = std::make_unique<Scheduler>(*engine_, so);
    state_.engine.store(engine_.get());
    state_.scheduler.store(scheduler_.get());
    server_->GetHealthCheckService()->SetServingStatus(true);
    spdlog::info("model {} loaded on {} ({}) in {:.0f} ms; KV budget {} bytes; SERVING", engine_->config().name,
                 engine_->device_name(), engine_->dtype_name(), engine_->load_ms(), so.kv_budget_bytes);
  } else {
    spdlog::error("model load failed: {}", status.ToString());
  }
  std::lock_guard<std::mutex> l(load_mu_);
  load_done_ = true;
  load_status_ = status;
  load_cv_.notify_all();
}

absl::Status ServerApp::WaitLoaded() {
  std::unique_lock<std::mutex> l(load_mu_);
  load_cv_.wait(l, [&] { return load_done_; });
  return load_status_;
}

void ServerApp::Shutdown() {
  if (server_ == nullptr) return;
  spdlog::info("shutting down: draining running requests");
  server_->GetHealthCheckService()->SetServingStatus(false);
  state_.shutting_down.store(true);
  if (loader_.joinable()) loader_.join();
  if (scheduler_) scheduler_->Drain();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server_->Wait();
  if (scheduler_) scheduler_->Stop();
  state_.scheduler.store(nullptr);
  if (metrics_http_) {
    metrics_http_->http.stop();
    if (metrics_http_->thread.joinable()) metrics_http_->thread.join();
  }
  server_.reset();
  spdlog::info("stopped");
}

}  // namespace kvstream::server
