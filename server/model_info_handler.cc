#include "server/generation_service.h"

namespace kvstream::server {

grpc::Status HandleModelInfo(ServerState& state, v1::ModelInfo* r) {
  Engine* engine = state.engine.load();
  if (engine == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is loading");
  const ModelConfig& c = engine->config();
  r->set_name(c.name);
  r->set_architecture(c.architecture);
  r->set_n_layers(static_cast<int32_t>(c.n_layers));
  r->set_n_heads(static_cast<int32_t>(c.n_heads));
  r->set_n_kv_heads(static_cast<int32_t>(c.n_kv_heads));
  r->set_head_dim(static_cast<int32_t>(c.head_dim));
  r->set_context_length(static_cast<int32_t>(c.context_length));
  r->set_vocab_size(static_cast<int32_t>(c.vocab_size));
  r->set_device(engine->device_name());
  r->set_dtype(engine->dtype_name());
  for (const std::string& s : engine->strategies().Names()) r->add_strategies(s);
  r->set_weight_bytes(engine->model().weight_bytes());
  if (Scheduler* sched = state.scheduler.load()) {
    const SchedulerStats s = sched->Stats();
    r->set_kv_bytes_in_use(s.kv_bytes_in_use);
    r->set_kv_budget_bytes(s.kv_budget_bytes);
    r->set_running_requests(s.running);
    r->set_queued_requests(s.queued);
  }
  return grpc::Status::OK;
}

}  // namespace kvstream::server
