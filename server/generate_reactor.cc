#include "server/generate_reactor.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "absl/strings/str_format.h"
#include "server/status_convert.h"
#include "server/translate.h"

namespace kvstream::server {
namespace {

// Turns engine events into responses on the link, and logs/meters the end.
class StreamObserver final : public RequestObserver {
 public:
  StreamObserver(std::shared_ptr<StreamLink> link, ServerState& state, const Engine& engine, std::string id,
                 std::string strategy, bool logprobs)
      : link_(std::move(link)), state_(state), engine_(engine), id_(std::move(id)),
        strategy_(std::move(strategy)), logprobs_(logprobs) {}

  void OnDelta(StreamDelta delta) override {
    v1::GenerateResponse r;
    *r.mutable_delta() = ToProto(delta, engine_.tokenizer(), logprobs_);
    link_->Post(std::move(r));
  }

  void OnDone(absl::StatusOr<GenerateOutcome> outcome) override {
    if (!outcome.ok()) {
      state_.metrics.RequestEnded(strategy_, absl::StatusCodeToString(outcome.status().code()));
      spdlog::info("request id={} strategy={} status={} msg=\"{}\"", id_, strategy_,
                   absl::StatusCodeToString(outcome.status().code()), std::string(outcome.status().message()));
      link_->PostFinish(ToGrpcStatus(outcome.status()));
      return;
    }
    const GenerateOutcome& o = *outcome;
    state_.metrics.RequestEnded(strategy_, "OK");
    state_.metrics.ObserveTtft(o.timings.ttft_ms);
    if (o.completion_tokens > 1) state_.metrics.ObserveItl(o.timings.mean_itl_ms);
    state_.metrics.ObserveCache(strategy_, o.cache.kv_bytes_device + o.cache.kv_bytes_host, o.cache.peak_kv_bytes,
                                o.cache.dense_equivalent_bytes);
    const double decode_s = (o.timings.total_ms - o.timings.ttft_ms) / 1000.0;
    spdlog::info(
        "request id={} strategy={} status=OK prompt_tokens={} completion_tokens={} ttft_ms={:.1f} "
        "tok_s={:.1f} kv_bytes={} ratio={:.2f} finish={}",
        id_, strategy_, o.prompt_tokens, o.completion_tokens, o.timings.ttft_ms,
        decode_s > 0 ? (o.completion_tokens - 1) / decode_s : 0.0, o.cache.kv_bytes_device + o.cache.kv_bytes_host,
        o.cache.compression_ratio, static_cast<int>(o.finish));
    v1::GenerateResponse r;
    *r.mutable_result() = ToProto(o, id_);
    link_->Post(std::move(r));
    link_->PostFinish(grpc::Status::OK);
  }

 private:
  std::shared_ptr<StreamLink> link_;
  ServerState& state_;
  const Engine& engine_;
  std::string id_, strategy_;
  bool logprobs_;
};

}  // namespace

void StreamLink::Post(v1::GenerateResponse response) {
  std::lock_guard<std::mutex> l(mu_);
  if (reactor_ == nullptr || final_) return;
  if (pending_.size() >= kMaxPending && response.has_delta() && pending_.back().has_delta()) {
    v1::TokenDelta* last = pending_.back().mutable_delta();
    last->mutable_text()->append(response.delta().text());
    last->mutable_token_ids()->MergeFrom(response.delta().token_ids());
    last->mutable_logprobs()->MergeFrom(response.delta().logprobs());
  } else {
    pending_.push_back(std::move(response));
  }
  PumpLocked();
}

void StreamLink::PostFinish(grpc::Status status) {
  std::lock_guard<std::mutex> l(mu_);
  if (final_) return;
  final_ = std::move(status);
  if (reactor_ != nullptr) PumpLocked();
}

void StreamLink::WriteDone(bool ok) {
  std::lock_guard<std::mutex> l(mu_);
  writing_ = false;
  if (!ok) pending_.clear();
  if (reactor_ != nullptr) PumpLocked();
}

void StreamLink::Detach() {
  std::lock_guard<std::mutex> l(mu_);
  reactor_ = nullptr;
}

void StreamLink::PumpLocked() {
  if (writing_ || finish_called_) return;
  if (!pending_.empty()) {
    in_flight_ = std::move(pending_.front());
    pending_.pop_front();
    writing_ = true;
    reactor_->StartWrite(&in_flight_);
  } else if (final_) {
    finish_called_ = true;
    reactor_->Finish(*final_);
  }
}

GenerateReactor::GenerateReactor(grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request,
                                 ServerState& state)
    : state_(state), link_(std::make_shared<StreamLink>(this)) {
  // Before anything else: an unauthenticated caller learns nothing about
  // the server's state, not even whether the model has loaded.
  if (grpc::Status auth = state.auth.Check(*ctx); !auth.ok()) {
    link_->PostFinish(std::move(auth));
    return;
  }
  Engine* engine = state.engine.load();
  Scheduler* scheduler = state.scheduler.load();
  if (engine == nullptr || scheduler == nullptr || state.shutting_down.load()) {
    link_->PostFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   engine == nullptr ? "model is loading" : "server is shutting down"));
    return;
  }
  std::string id = request->request_id();
  if (id.empty()) id = absl::StrFormat("req-%d", state.next_request.fetch_add(1));
  auto spec = ToSpec(*request, engine->tokenizer(), engine->config().context_length);
  if (!spec.ok()) {
    state.metrics.RequestEnded(request->kv_compression().strategy_case() == 0 ? "dense" : "other",
                               absl::StatusCodeToString(spec.status().code()));
    link_->PostFinish(ToGrpcStatus(spec.status()));
    return;
  }
  if (state.max_prompt_tokens > 0 && static_cast<int64_t>(spec->prompt_ids.size()) > state.max_prompt_tokens) {
    state.metrics.RequestEnded(spec->kv.strategy, "INVALID_ARGUMENT");
    link_->PostFinish(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrFormat("prompt has %d tokens; this server accepts at most %d (--max-prompt-tokens)",
                        spec->prompt_ids.size(), state.max_prompt_tokens)));
    return;
  }
  SubmittedRequest sub;
  sub.request_id = id;
  sub.cancelled = cancelled_;
  const auto deadline = ctx->deadline();
  if (deadline < std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    sub.deadline = std::chrono::steady_clock::now() + (deadline - std::chrono::system_clock::now());
  }
  const std::string strategy = spec->kv.strategy;
  sub.observer = std::make_shared<StreamObserver>(link_, state, *engine, id, strategy,
                                                  spec->return_logprobs);
  sub.spec = std::move(*spec);
  absl::Status st = scheduler->Submit(std::move(sub));
  if (!st.ok()) {
    state.metrics.RequestEnded(strategy, absl::StatusCodeToString(st.code()));
    link_->PostFinish(ToGrpcStatus(st));
  }
}

void GenerateReactor::OnWriteDone(bool ok) {
  if (!ok) cancelled_->store(true);  // client gone: the scheduler frees the KV at its next step
  link_->WriteDone(ok);
}

void GenerateReactor::OnCancel() { cancelled_->store(true); }

void GenerateReactor::OnDone() {
  cancelled_->store(true);
  link_->Detach();
  delete this;
}

}  // namespace kvstream::server
