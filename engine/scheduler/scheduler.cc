#include "engine/scheduler/scheduler.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/step_error.h"
#include "engine/status_macros.h"

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;
double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Why a request must stop now, if it must.
std::optional<absl::Status> Interrupted(const SubmittedRequest& r, Clock::time_point now) {
  if (r.cancelled->load()) return absl::CancelledError("request cancelled by the client");
  if (r.deadline && now >= *r.deadline) return absl::DeadlineExceededError("request deadline passed");
  return std::nullopt;
}

}  // namespace

Scheduler::Scheduler(Engine& engine, SchedulerOptions options) : engine_(engine), options_(options) {
  stats_.kv_budget_bytes = options_.kv_budget_bytes;
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::Submit(SubmittedRequest request) {
  KV_RETURN_IF_ERROR(engine_.Validate(request.spec));
  KV_ASSIGN_OR_RETURN(Strategy * strategy, engine_.strategies().Get(request.spec.kv.strategy));
  const GenerateSpec& s = request.spec;
  const int64_t new_tokens = TotalTokens(s) - static_cast<int64_t>(s.prompt_ids.size());
  const int64_t predicted =
      strategy->PredictBytes(s.kv, static_cast<int64_t>(s.prompt_ids.size()), new_tokens);
  std::lock_guard<std::mutex> l(mu_);
  if (draining_ || stop_) return absl::UnavailableError("server is shutting down");
  if (predicted > options_.kv_budget_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "request needs %d KV bytes (%s, %d prompt + %d new tokens) but the KV budget is %d bytes",
        predicted, s.kv.strategy, s.prompt_ids.size(), new_tokens, options_.kv_budget_bytes));
  }
  if (static_cast<int32_t>(queue_.size()) >= options_.max_queue) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "queue full: %d requests waiting (--max-queue=%d); request needs %d KV bytes, %d of %d free",
        queue_.size(), options_.max_queue, predicted,
        options_.kv_budget_bytes - stats_.kv_bytes_reserved, options_.kv_budget_bytes));
  }
  queue_.push_back(Queued{std::move(request), predicted, Clock::now()});
  stats_.queued = static_cast<int32_t>(queue_.size());
  cv_.notify_one();
  return absl::OkStatus();
}

void Scheduler::Drain() {
  std::unique_lock<std::mutex> l(mu_);
  draining_ = true;
  idle_cv_.wait(l, [&] { return stop_ || (queue_.empty() && stats_.running == 0); });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
    cv_.notify_all();
    idle_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  // The thread is gone: end whatever is left, outside the lock.
  std::deque<Queued> queued;
  {
    std::lock_guard<std::mutex> l(mu_);
    queued.swap(queue_);
  }
  for (auto& q : queued) q.req.observer->OnDone(absl::UnavailableError("server is shutting down"));
  for (auto& r : running_) Abort(*r, absl::UnavailableError("server is shutting down"));
  running_.clear();
}

SchedulerStats Scheduler::Stats() const {
  std::lock_guard<std::mutex> l(mu_);
  return stats_;
}

void Scheduler::Abort(Running& r, absl::Status status) {
  r.seq.cache.reset();  // free the KV before telling anyone
  r.req.observer->OnDone(std::move(status));
}

void Scheduler::AdmitLocked(std::vector<Queued>* admitted) {
  // FIFO: the head waits until it fits, so a large request is never starved
  // by smaller ones behind it.
  while (!queue_.empty() &&
         static_cast<int32_t>(running_.size() + admitted->size()) < options_.max_batch &&
         stats_.kv_bytes_reserved + queue_.front().predicted <= options_.kv_budget_bytes) {
    stats_.kv_bytes_reserved += queue_.front().predicted;
    admitted->push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  stats_.queued = static_cast<int32_t>(queue_.size());
  // Counted as running from admission on (under the same lock), so Drain()
  // never sees a request that is neither queued nor running.
  stats_.running = static_cast<int32_t>(running_.size() + admitted->size());
}

void Scheduler::Loop() {
  while (true) {
    std::vector<Queued> admitted, dropped;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty() || !running_.empty(); });
      if (stop_) {
        if (pending_.has_value()) (void)ToHost(pending_->result, false);  // let it finish before caches go
        pending_.reset();
        return;
      }
      const auto now = Clock::now();
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (Interrupted(it->req, now)) {
          dropped.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      AdmitLocked(&admitted);
    }
    const auto now = Clock::now();
    for (auto& q : dropped) q.req.observer->OnDone(*Interrupted(q.req, now));
    for (auto& q : admitted) {
      auto r = std::make_unique<Running>();
      r->id = next_id_++;
      r->req = std::move(q.req);
      r->reserved = q.predicted;
      r->submitted = q.submitted;
      r->admitted = now;
      r->seq.gen = std::make_unique<Generation>(r->req.spec, engine_.tokenizer());
      r->seq.gen->start = q.submitted;  // TTFT as the client sees it, queueing included
      absl::Status st = engine_.strategies().Get(r->req.spec.kv.strategy).status();
      if (st.ok()) {
        r->seq.strategy = *engine_.strategies().Get(r->req.spec.kv.strategy);
        StrategyConfig kv = r->req.spec.kv;
        kv.max_tokens = TotalTokens(r->req.spec);
        auto cache = r->seq.strategy->Open(kv);
        if (cache.ok()) r->seq.cache = std::move(*cache);
        st = cache.status();
      }
      if (!st.ok()) {
        {
          std::lock_guard<std::mutex> l(mu_);
          stats_.kv_bytes_reserved -= r->reserved;
        }
        r->req.observer->OnDone(st);
        continue;
      }
      running_.push_back(std::move(r));
    }
    // Cancelled or expired running requests leave before the step.
    for (auto it = running_.begin(); it != running_.end();) {
      if (auto why = Interrupted((*it)->req, now)) {
        {
          std::lock_guard<std::mutex> l(mu_);
          stats_.kv_bytes_reserved -= (*it)->reserved;
        }
        Abort(**it, *why);
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    if (!running_.empty()) Step();
    int64_t in_use = 0;
    // Device bytes, as the budget and the reservations count them (AKV's
    // cold tier lives in host memory).
    for (const auto& r : running_) in_use += r->seq.cache->DeviceBytesHeld();
    std::lock_guard<std::mutex> l(mu_);
    stats_.kv_bytes_in_use = in_use;
    stats_.peak_kv_bytes_in_use = std::max(stats_.peak_kv_bytes_in_use, in_use);
    stats_.running = static_cast<int32_t>(running_.size());
    if (queue_.empty() && running_.empty()) idle_cv_.notify_all();
  }
}

absl::StatusOr<LaunchedStep> Scheduler::Launch(std::vector<SeqInput> inputs, std::vector<uint64_t> rows) {
  LaunchedStep l;
  l.inputs = std::move(inputs);
  l.rows = std::move(rows);
  try {
    at::InferenceMode guard;
    KV_ASSIGN_OR_RETURN(l.result, engine_.model().Step(l.inputs, StepContext{engine_.NextStepId()}));
  } catch (const c10::Error& e) {
    return StepErrorStatus(e, "forward failed");
  }
  for (const auto& r : running_) {
    if (std::find(l.rows.begin(), l.rows.end(), r->id) != l.rows.end()) {
      l.full = l.full || r->seq.gen->NeedsFullLogits();
    }
  }
  return l;
}

void Scheduler::AbortAll(const absl::Status& status) {
  // A failed step fails every request in it; the server keeps serving.
  int64_t released = 0;
  for (auto& r : running_) {
    released += r->reserved;
    Abort(*r, status);
  }
  running_.clear();
  std::lock_guard<std::mutex> l(mu_);
  stats_.kv_bytes_reserved -= released;
}

void Scheduler::Step() {
  if (!pending_.has_value()) {
    std::vector<SeqInput> inputs;
    std::vector<uint64_t> ids;
    inputs.reserve(running_.size());
    for (const auto& r : running_) {
      inputs.push_back(r->seq.NextInput(options_.prefill_chunk));
      ids.push_back(r->id);
    }
    auto launched = Launch(std::move(inputs), std::move(ids));
    if (!launched.ok()) return AbortAll(launched.status());
    pending_ = *std::move(launched);
  }
  LaunchedStep step = *std::move(pending_);
  pending_.reset();
  // Run ahead when the batch is the step's (nobody admitted, cancelled or
  // finished since) and every row may (CanRunAhead).
  bool same_rows = step.rows.size() == running_.size();
  std::vector<const ActiveSequence*> seqs;
  for (size_t i = 0; same_rows && i < running_.size(); ++i) {
    same_rows = running_[i]->id == step.rows[i];
    seqs.push_back(&running_[i]->seq);
  }
  if (same_rows && CanRunAhead(step.result, step.inputs, seqs)) {
    auto ahead = Launch(RunAheadInputs(step), step.rows);
    if (!ahead.ok()) return AbortAll(ahead.status());
    pending_ = *std::move(ahead);
  }
  absl::StatusOr<HostLogits> host = ToHost(step.result, step.full);
  if (!host.ok()) {
    if (pending_.has_value()) (void)ToHost(pending_->result, false);
    pending_.reset();
    return AbortAll(host.status());
  }
  const double step_ms = StepReadMs(step, &last_read_);
  const Clock::time_point now = last_read_;
  int64_t produced = 0, released = 0;
  for (size_t i = 0; i < step.rows.size(); ++i) {
    // The row's request, unless it ended since the step was launched
    // (cancelled, or stopped on the step before this run-ahead one).
    auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& r) { return r->id == step.rows[i]; });
    if (it == running_.end() || (*it)->seq.cache == nullptr) continue;
    Running& r = **it;
    StreamDelta d;
    if (!r.seq.Consume(step.inputs[i], host->Row(i), step_ms, &d)) continue;
    ++produced;
    if (!d.text.empty() || !d.tokens.empty()) r.req.observer->OnDelta(std::move(d));
    if (r.seq.gen->finished()) {
      GenerateOutcome o = r.seq.Finish();
      o.timings.queue_ms = MsBetween(r.submitted, r.admitted);
      released += r.reserved;
      r.req.observer->OnDone(std::move(o));
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const auto& r) { return r->seq.cache == nullptr; }),
                 running_.end());
  std::lock_guard<std::mutex> l(mu_);
  stats_.kv_bytes_reserved -= released;
  stats_.steps += 1;
  stats_.tokens_generated += produced;
  recent_.emplace_back(now, produced);
  while (!recent_.empty() && now - recent_.front().first > kRateWindow) recent_.pop_front();
  int64_t window_tokens = 0;
  for (const auto& [t, n] : recent_) window_tokens += n;
  const double span = std::chrono::duration<double>(now - recent_.front().first).count();
  stats_.tokens_per_second = span > 0.5 ? window_tokens / span : 0.0;
}

}  // namespace kvstream
