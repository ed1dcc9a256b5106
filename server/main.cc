// kvstream-server: flags as in shared/design/api.md "Server binary and flags".
#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "server/server_app.h"
#include "tools/argv_dashes.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct.Q4_1.gguf", "GGUF file or Hugging Face folder");
ABSL_FLAG(std::string, host, "127.0.0.1", "address to listen on (the container passes 0.0.0.0)");
ABSL_FLAG(int32_t, port, 50051, "gRPC port (0 = pick a free one and log it)");
ABSL_FLAG(std::string, device, "auto", "auto | cpu | cuda");
ABSL_FLAG(int64_t, kv_budget_bytes, 0, "KV cache bytes all running requests may hold (0 = what fits beside the weights)");
ABSL_FLAG(int64_t, host_kv_budget_bytes, 0, "host-memory KV tiers budget, e.g. AKV cold (0 = automatic)");
ABSL_FLAG(int32_t, max_batch, 64, "sequences per engine step");
ABSL_FLAG(int32_t, max_queue, 256, "requests waiting for admission before RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, prefill_chunk, 512, "prompt tokens per sequence per step");
ABSL_FLAG(int32_t, metrics_port, 0, "Prometheus /metrics port (0 = off)");
ABSL_FLAG(bool, allow_entmax_attention, false, "let EntmaxKV requests use alpha > 1");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain (TLS on when given with --tls-key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key");
ABSL_FLAG(std::string, auth_token_file, "", "file holding the bearer token clients must send");
ABSL_FLAG(int64_t, max_message_bytes, 16 << 20, "largest request message accepted (bytes); larger ones get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_prompt_tokens, 0, "longest prompt accepted, in tokens (0 = only the model context limits it)");
ABSL_FLAG(std::string, synthetic, "", "serve seeded random weights of this architecture instead of --model: llama3-8b, llama3-70b, qwen2.5-7b, smollm2-135m");
ABSL_FLAG(int32_t, threads, 0, "CPU threads for the engine (0 = all cores)");
ABSL_FLAG(int32_t, tensor_parallel, 1,
          "shards of the model, one rank each: 1 to its KV-head count (ranks 0.. take one more head where it does not divide); CUDA: one GPU per rank, NCCL; CPU: threads of this process");

int main(int argc, char** argv) {
  // KV buffers and step temporaries of every size come and go for the life
  // of the server. glibc raises its mmap threshold each time a large mmapped
  // block is freed (up to 32 MB), after which such blocks live in the heap
  // and fragment it; a fixed threshold keeps them mmapped, so freeing one
  // returns it to the OS (the fuzz test's RSS bound holds with it).
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  kvstream::DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  // Block SIGTERM/SIGINT before any thread starts; main waits for them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  kvstream::server::ServerOptions o;
  o.model = absl::GetFlag(FLAGS_model);
  o.host = absl::GetFlag(FLAGS_host);
  o.port = absl::GetFlag(FLAGS_port);
  o.device = absl::GetFlag(FLAGS_device);
  o.kv_budget_bytes = absl::GetFlag(FLAGS_kv_budget_bytes);
  o.host_kv_budget_bytes = absl::GetFlag(FLAGS_host_kv_budget_bytes);
  o.max_batch = absl::GetFlag(FLAGS_max_batch);
  o.max_queue = absl::GetFlag(FLAGS_max_queue);
  o.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  o.allow_entmax_attention = absl::GetFlag(FLAGS_allow_entmax_attention);
  o.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key = absl::GetFlag(FLAGS_tls_key);
  o.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  o.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  o.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  o.threads = absl::GetFlag(FLAGS_threads);
  o.synthetic = absl::GetFlag(FLAGS_synthetic);
  o.tensor_parallel = absl::GetFlag(FLAGS_tensor_parallel);
  if (o.max_batch < 1 || o.max_queue < 0 || o.prefill_chunk < 1 || o.kv_budget_bytes < 0) {
    std::fprintf(stderr, "error: --max-batch and --prefill-chunk must be >= 1, --max-queue and --kv-budget-bytes >= 0\n");
    return 2;
  }

  kvstream::server::ServerApp app(o);
  if (absl::Status s = app.Start(); !s.ok()) {
    spdlog::error("{}", s.ToString());
    return 1;
  }
  if (absl::Status s = app.WaitLoaded(); !s.ok()) {
    app.Shutdown();
    return 1;
  }
  int sig = 0;
  sigwait(&sigs, &sig);
  spdlog::info("signal {} received", sig);
  app.Shutdown();
  return 0;
}
