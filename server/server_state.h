// What the RPC handlers share: the engine and scheduler once the model has
// loaded (null before), metrics, the request-id counter, and the
// operator's limits (auth token, prompt length).
#pragma once

#include <atomic>
#include <string>

#include "engine/runtime/engine.h"
#include "engine/scheduler/scheduler.h"
#include "server/auth.h"
#include "server/metrics.h"

namespace kvstream::server {

struct ServerState {
  std::atomic<Engine*> engine{nullptr};
  std::atomic<Scheduler*> scheduler{nullptr};
  std::atomic<bool> shutting_down{false};
  Metrics metrics;
  std::atomic<uint64_t> next_request{1};
  std::string load_error;  // set if the model failed to load
  // Set once in ServerApp::Start, before the port opens; read-only after.
  TokenAuth auth;
  int64_t max_prompt_tokens = 0;  // --max-prompt-tokens (0 = the model context decides)
};

}  // namespace kvstream::server
