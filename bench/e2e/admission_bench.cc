// Concurrent sequences the engine's Scheduler admits under one KV budget, per
// KV strategy (issue 8: "concurrent sequences admitted at T=32K under one KV
// budget vs dense, goal >= 3x"). Measured, not computed: each strategy gets a
// fresh Scheduler with --kv-budget-bytes, all --requests are submitted at once
// (prompts of --context random ids, --max-new greedy tokens, ignore_eos), and
// Stats() is polled every --poll-us until every request has ended; the table
// gives the peak of `running` and its ratio to the first strategy's peak.
// PredictBytes (what admission reserves) is printed beside it as the formula's
// answer, so a gap between the two shows up.
//
// GPU (H100; SmolLM2-135M stops at 8K context, so 32K runs on llama3-8b's
// shape with seeded weights: admission only sees the KV geometry; ~4.3 GB of
// dense KV per sequence, the budget fits 4; akv#2 is the eval's compact
// setting; peak running is reached at admission, so the deadline only bounds
// the run), one command line:
//   build-gpu/admission_bench --synthetic=llama3-8b --context=32768 --max-new=4 --requests=48
//     --kv-budget-bytes=18000000000 --strategies=dense,akv,akv --deadline-s=120 --json=admission.json
//     --kv=akv#2.hot_budget=32,akv#2.n_anchors=16,akv#2.eviction_batch_size=8,akv#2.prefill_chunk_tokens=32,
//          akv#2.warm_budget=8192,akv#2.enable_cold_tier=false
// (deploy/gpu/run.sh stage `admission`). The CPU check on the bundled model:
//   build/admission_bench --model=models/SmolLM2-135M-Instruct.Q4_1.gguf --context=256 --max-new=2
//     --requests=12 --kv-budget-bytes=26000000
//     --kv=hot_budget=16,n_anchors=8,eviction_batch_size=4,prefill_chunk_tokens=16
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/runtime/engine.h"
#include "engine/scheduler/scheduler.h"
#include "tools/argv_dashes.h"

ABSL_FLAG(std::string, model, "", "GGUF file or Hugging Face folder");
ABSL_FLAG(std::string, synthetic, "", "architecture with seeded random weights instead of --model (e.g. llama3-8b)");
ABSL_FLAG(std::string, device, "auto", "auto | cpu | cuda");
ABSL_FLAG(int32_t, threads, 0, "CPU threads for ATen (0 = $KVSTREAM_THREADS, else all cores)");
ABSL_FLAG(int64_t, kv_pool_bytes, -1,
          "CUDA paged dense pool bytes (-1 = --kv-budget-bytes, so the other strategies' caches have the rest of "
          "the GPU; 0 = the engine's default, most of the free memory)");
ABSL_FLAG(int64_t, kv_budget_bytes, 0, "Scheduler KV budget in bytes (required)");
ABSL_FLAG(int64_t, context, 0, "prompt tokens per request (required)");
ABSL_FLAG(int32_t, max_new, 4, "generated tokens per request (greedy, ignore_eos)");
ABSL_FLAG(int32_t, requests, 48, "requests submitted at once per strategy");
ABSL_FLAG(int32_t, max_batch, 64, "Scheduler max batch (a peak equal to it is capped by it, not by the budget)");
ABSL_FLAG(int64_t, prefill_chunk, 512, "Scheduler prompt tokens per sequence per step");
ABSL_FLAG(std::string, strategies, "dense,akv", "strategies in order; the first one's peak is the ratio's denominator");
ABSL_FLAG(std::string, kv, "",
          "knobs as `kvstream bench --kv`: name=value (every strategy but dense), strategy.name=value, or "
          "label.name=value for a strategy listed twice (akv#2.warm_bits=2)");
ABSL_FLAG(int32_t, poll_us, 1000, "Stats() polling period in microseconds");
ABSL_FLAG(int32_t, deadline_s, 0, "cancel what is left after this many seconds per strategy (0 = none)");
ABSL_FLAG(uint32_t, seed, 1, "prompt ids seed (the same prompts for every strategy)");
ABSL_FLAG(std::string, json, "", "write results here");
ABSL_FLAG(std::string, commit, "", "commit of the build, recorded in the JSON");

namespace kvstream {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Run {
  std::string label, name, knobs;  // "akv#2", "akv", "hot_budget=32,..."
  StrategyConfig kv;
  int64_t predict_bytes = 0;
  // Measured.
  int32_t peak_running = 0, accepted = 0, rejected = 0, completed = 0, cancelled = 0, errors = 0;
  int64_t peak_reserved = 0, peak_in_use = 0, sched_peak_in_use = 0, steps = 0, tokens = 0;
  double wall_s = 0;
  std::string first_error;
};

// Applies --kv items to the runs; the syntax of client/strategy_set.h, engine-side.
absl::Status ApplyKnobs(const std::string& list, std::vector<Run>& runs) {
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipWhitespace())) {
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--kv item '", item, "' is not name=value"));
    }
    std::string name(item.substr(0, eq)), only;
    if (const size_t dot = name.find('.'); dot != std::string::npos) {
      only = name.substr(0, dot);
      name = name.substr(dot + 1);
    }
    auto parsed = ParseKnobList(absl::StrCat(name, item.substr(eq)));
    if (!parsed.ok()) return parsed.status();
    int applied = 0;
    for (Run& r : runs) {
      if (only.empty() ? r.name == "dense" : (r.name != only && r.label != only)) continue;
      for (const auto& [k, v] : *parsed) r.kv.knobs[k] = v;
      r.knobs = absl::StrCat(r.knobs, r.knobs.empty() ? "" : ",", name, item.substr(eq));
      ++applied;
    }
    if (applied == 0) return absl::InvalidArgumentError(absl::StrCat("--kv ", item, ": no listed strategy takes it"));
  }
  return absl::OkStatus();
}

// Tallies every request's end; OnDone is called on the engine thread.
struct Tally {
  std::mutex mu;
  int32_t done = 0, ok = 0, rejected = 0, cancelled = 0, errors = 0;
  std::string first_error;
  std::atomic<int64_t> tokens{0};
  std::atomic<bool> cancelling{false};  // the bench cancelled: CANCELLED is expected from then on
};

class Observer : public RequestObserver {
 public:
  Observer(Tally* t, int32_t want_tokens) : t_(t), want_(want_tokens) {}
  void OnDelta(StreamDelta d) override { t_->tokens += static_cast<int64_t>(d.tokens.size()); }
  void OnDone(absl::StatusOr<GenerateOutcome> outcome) override {
    std::lock_guard<std::mutex> l(t_->mu);
    ++t_->done;
    std::string error;
    if (++calls_ > 1) {
      error = "OnDone called twice";
    } else if (outcome.ok()) {
      // ignore_eos: anything short of max_new means the request was cut.
      if (outcome->completion_tokens != want_) {
        error = absl::StrCat("finished with ", outcome->completion_tokens, " of ", want_, " tokens");
      } else {
        ++t_->ok;
      }
    } else if (absl::IsResourceExhausted(outcome.status())) {
      ++t_->rejected;
    } else if (absl::IsCancelled(outcome.status()) && t_->cancelling.load()) {
      ++t_->cancelled;
    } else {
      error = outcome.status().ToString();
    }
    if (error.empty()) return;
    ++t_->errors;
    if (t_->first_error.empty()) t_->first_error = error;
  }

 private:
  Tally* t_;
  int32_t want_;
  int calls_ = 0;
};

// Prompt ids uniform over the vocabulary less the special tokens, so no
// request is chat-formatted or stopped early by what it was given.
std::vector<std::vector<int32_t>> MakePrompts(const Engine& e, int32_t n, int64_t T, uint32_t seed) {
  const Tokenizer& tok = e.tokenizer();
  const int32_t vocab = std::min<int32_t>(tok.vocab_size(), static_cast<int32_t>(e.config().vocab_size));
  std::vector<int32_t> pool;
  for (int32_t id = 0; id < vocab; ++id) {
    if (!tok.IsSpecial(id) && id != tok.bos_id() && id != tok.eos_id()) pool.push_back(id);
  }
  for (int32_t id = 0; pool.empty() && id < vocab; ++id) pool.push_back(id);  // a vocabulary of specials only
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    std::mt19937 rng(seed * 1000003u + static_cast<uint32_t>(i));
    std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
    prompts[i].resize(static_cast<size_t>(T));
    for (int32_t& t : prompts[i]) t = pool[pick(rng)];
  }
  return prompts;
}

void Measure(Engine& e, const SchedulerOptions& so, const std::vector<std::vector<int32_t>>& prompts, int32_t max_new,
             Run& run) {
  Tally tally;
  std::vector<std::shared_ptr<std::atomic<bool>>> cancel_flags;
  const auto t0 = Clock::now();
  Scheduler sched(e, so);
  for (size_t i = 0; i < prompts.size(); ++i) {
    SubmittedRequest r;
    r.request_id = absl::StrCat(run.label, "-", i);
    r.spec.prompt_ids = prompts[i];
    r.spec.sampling.temperature = 0;
    r.spec.sampling.max_new_tokens = max_new;
    r.spec.sampling.ignore_eos = true;
    r.spec.kv = run.kv;
    r.observer = std::make_shared<Observer>(&tally, max_new);
    cancel_flags.push_back(r.cancelled);
    const absl::Status st = sched.Submit(std::move(r));
    if (st.ok()) {
      ++run.accepted;
      continue;
    }
    ++(absl::IsResourceExhausted(st) ? run.rejected : run.errors);
    if (run.first_error.empty()) run.first_error = st.ToString();
  }
  const int32_t deadline_s = absl::GetFlag(FLAGS_deadline_s);
  const auto poll = std::chrono::microseconds(absl::GetFlag(FLAGS_poll_us));
  double last_print = 0;
  for (;;) {
    const SchedulerStats s = sched.Stats();
    run.peak_running = std::max(run.peak_running, s.running);
    run.peak_reserved = std::max(run.peak_reserved, s.kv_bytes_reserved);
    run.peak_in_use = std::max(run.peak_in_use, s.kv_bytes_in_use);
    int32_t done;
    {
      std::lock_guard<std::mutex> l(tally.mu);
      done = tally.done;
    }
    const double t = Since(t0);
    if (done >= run.accepted || t - last_print >= 2.0) {
      std::fprintf(stderr,
                   "[adm] %s t=%.1fs running=%d (peak %d) queued=%d done=%d/%d reserved=%.1f MB in_use=%.1f MB\n",
                   run.label.c_str(), t, s.running, run.peak_running, s.queued, done, run.accepted,
                   s.kv_bytes_reserved / 1e6, s.kv_bytes_in_use / 1e6);
      last_print = t;
    }
    if (done >= run.accepted) break;
    if (deadline_s > 0 && t > deadline_s && !tally.cancelling.exchange(true)) {
      std::fprintf(stderr, "[adm] %s: --deadline-s=%d passed, cancelling what is left\n", run.label.c_str(),
                   deadline_s);
      for (auto& f : cancel_flags) f->store(true);
    }
    std::this_thread::sleep_for(poll);
  }
  sched.Drain();
  const SchedulerStats s = sched.Stats();
  run.wall_s = Since(t0);
  run.sched_peak_in_use = s.peak_kv_bytes_in_use;
  run.steps = s.steps;
  run.tokens = tally.tokens.load();
  std::lock_guard<std::mutex> l(tally.mu);
  run.completed = tally.ok;
  run.rejected += tally.rejected;
  run.cancelled = tally.cancelled;
  run.errors += tally.errors;
  if (run.first_error.empty()) run.first_error = tally.first_error;
  if (tally.done != run.accepted) {  // Drain returned, so every accepted request must have ended
    ++run.errors;
    run.first_error = absl::StrCat("OnDone ", tally.done, " times for ", run.accepted, " accepted requests");
  }
}

std::string JsonEscape(std::string s) {
  std::replace(s.begin(), s.end(), '"', '\'');
  std::replace(s.begin(), s.end(), '\\', '/');
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

int Usage(const std::string& why) {
  std::fprintf(stderr, "error: %s\n", why.c_str());
  return 2;
}

}  // namespace
}  // namespace kvstream

int main(int argc, char** argv) {
  using namespace kvstream;
  DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const int64_t budget = absl::GetFlag(FLAGS_kv_budget_bytes), T = absl::GetFlag(FLAGS_context);
  const int32_t max_new = absl::GetFlag(FLAGS_max_new), n = absl::GetFlag(FLAGS_requests);
  const int32_t max_batch = absl::GetFlag(FLAGS_max_batch);
  const int64_t pool = absl::GetFlag(FLAGS_kv_pool_bytes), chunk = absl::GetFlag(FLAGS_prefill_chunk);
  if (absl::GetFlag(FLAGS_model).empty() == absl::GetFlag(FLAGS_synthetic).empty()) {
    return Usage("give exactly one of --model and --synthetic");
  }
  if (budget < 1) return Usage("--kv-budget-bytes is required (> 0)");
  if (T < 1 || T > (1 << 24)) return Usage("--context must be in [1, 16777216]");
  if (max_new < 1 || max_new > 4096) return Usage("--max-new must be in [1, 4096]");
  if (n < 1 || n > 4096) return Usage("--requests must be in [1, 4096]");
  if (max_batch < 1 || max_batch > 256) return Usage("--max-batch must be in [1, 256]");
  if (chunk < 1 || chunk > 65536) return Usage("--prefill-chunk must be in [1, 65536]");
  if (pool < -1) return Usage("--kv-pool-bytes must be -1, 0 or a byte count");
  const int32_t threads = absl::GetFlag(FLAGS_threads), poll_us = absl::GetFlag(FLAGS_poll_us);
  const int32_t deadline_s = absl::GetFlag(FLAGS_deadline_s);
  if (threads < 0 || threads > 1024) return Usage("--threads must be in [0, 1024]");
  if (poll_us < 50 || poll_us > 1000000) return Usage("--poll-us must be in [50, 1000000]");
  if (deadline_s < 0 || deadline_s > 86400) return Usage("--deadline-s must be in [0, 86400]");

  std::vector<Run> runs;
  std::map<std::string, int> seen;
  for (absl::string_view raw : absl::StrSplit(absl::GetFlag(FLAGS_strategies), ',', absl::SkipWhitespace())) {
    Run r;
    r.name = r.kv.strategy = std::string(absl::StripAsciiWhitespace(raw));
    const int k = ++seen[r.name];
    r.label = k == 1 ? r.name : absl::StrCat(r.name, "#", k);
    runs.push_back(std::move(r));
  }
  if (runs.empty()) return Usage("--strategies is empty (e.g. dense,akv)");
  if (absl::Status st = ApplyKnobs(absl::GetFlag(FLAGS_kv), runs); !st.ok()) return Usage(st.ToString());

  EngineOptions o;
  o.model_path = absl::GetFlag(FLAGS_model);
  o.synthetic = absl::GetFlag(FLAGS_synthetic);
  o.device = absl::GetFlag(FLAGS_device);
  o.threads = threads;
  o.prefill_chunk = chunk;
  o.kv_pool_bytes = pool < 0 ? budget : pool;  // CPU ignores it
  std::fprintf(stderr, "[adm] loading %s ...\n", o.synthetic.empty() ? o.model_path.c_str() : o.synthetic.c_str());
  auto engine = Engine::Load(o);
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  Engine& e = **engine;
  if (T + max_new > e.config().context_length) {
    return Usage(absl::StrCat("--context + --max-new = ", T + max_new, " is past ", e.config().name, "'s context of ",
                              e.config().context_length, " tokens"));
  }
  for (Run& r : runs) {
    auto s = e.strategies().Get(r.name);
    absl::Status st = s.ok() ? (*s)->Validate(r.kv) : s.status();
    if (!st.ok()) return Usage(absl::StrCat(r.label, ": ", st.ToString()));
    r.predict_bytes = (*s)->PredictBytes(r.kv, T, max_new);
    std::fprintf(stderr, "[adm] %s%s%s: PredictBytes(T=%lld + %d) = %lld (%.2f MB); the budget holds %lld by it\n",
                 r.label.c_str(), r.knobs.empty() ? "" : " ", r.knobs.c_str(), static_cast<long long>(T), max_new,
                 static_cast<long long>(r.predict_bytes), r.predict_bytes / 1e6,
                 static_cast<long long>(r.predict_bytes > 0 ? budget / r.predict_bytes : 0));
  }
  std::fprintf(stderr, "[adm] %s on %s (%s), T=%lld, %d new, %d requests, budget %lld bytes, KV pool %lld\n",
               e.config().name.c_str(), e.device_name().c_str(), e.dtype_name().c_str(), static_cast<long long>(T),
               max_new, n, static_cast<long long>(budget), static_cast<long long>(e.kv_pool_bytes()));

  const auto prompts = MakePrompts(e, n, T, absl::GetFlag(FLAGS_seed));
  SchedulerOptions so;
  so.kv_budget_bytes = budget;
  so.max_batch = max_batch;
  so.max_queue = n;  // every request waits in the queue: only the budget may refuse one
  so.prefill_chunk = chunk;
  bool failed = false;
  for (size_t i = 0; i < runs.size(); ++i) {
    std::fprintf(stderr, "[adm] run %zu/%zu: %s ...\n", i + 1, runs.size(), runs[i].label.c_str());
    Measure(e, so, prompts, max_new, runs[i]);
    const Run& r = runs[i];
    if (r.errors > 0) {
      failed = true;
      std::fprintf(stderr, "[adm] %s: %d unexpected errors, first: %s\n", r.label.c_str(), r.errors,
                   r.first_error.c_str());
    } else if (r.rejected > 0) {
      std::fprintf(stderr, "[adm] %s: %d rejected: %s\n", r.label.c_str(), r.rejected, r.first_error.c_str());
    }
    // Either cap makes the ratio a lower bound: the budget was not what stopped admission.
    if (r.peak_running == max_batch)
      std::fprintf(stderr, "[adm] %s: peak running is --max-batch, not the budget\n", r.label.c_str());
    if (r.peak_running == r.accepted)
      std::fprintf(stderr, "[adm] %s: every request ran at once (raise --requests)\n", r.label.c_str());
  }

  const double base = runs[0].peak_running;
  std::printf("\n%-8s %14s %8s %9s %9s | %12s %8s %9s %9s | %13s %13s %13s %9s\n", "strategy", "budget B", "requests",
              "rejected", "cancelled", "peak running", "ratio", "predict", "formula", "peak resv B", "peak in-use B",
              "sched peak B", "wall s");
  for (const Run& r : runs) {
    std::printf("%-8s %14lld %8d %9d %9d | %12d %7.2fx %9lld %9lld | %13lld %13lld %13lld %9.1f\n", r.label.c_str(),
                static_cast<long long>(budget), n, r.rejected, r.cancelled, r.peak_running,
                base > 0 ? r.peak_running / base : 0.0, static_cast<long long>(r.predict_bytes),
                static_cast<long long>(r.predict_bytes > 0 ? budget / r.predict_bytes : 0),
                static_cast<long long>(r.peak_reserved), static_cast<long long>(r.peak_in_use),
                static_cast<long long>(r.sched_peak_in_use), r.wall_s);
  }
  for (const Run& r : runs) {
    if (!r.knobs.empty()) std::printf("%-8s %s\n", r.label.c_str(), r.knobs.c_str());
  }

  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream f(path);
    f << "{\"bench\": \"admission\", \"engine\": \"kvstream\", \"commit\": \""
      << JsonEscape(absl::GetFlag(FLAGS_commit)) << "\", \"device\": \"" << JsonEscape(e.device_name())
      << "\", \"dtype\": \"" << e.dtype_name() << "\", \"model\": \"" << JsonEscape(e.config().name)
      << "\", \"source\": \"" << JsonEscape(o.synthetic.empty() ? o.model_path : "synthetic:" + o.synthetic)
      << "\", \"context\": " << T << ", \"max_new\": " << max_new << ", \"requests\": " << n
      << ", \"kv_budget_bytes\": " << budget << ", \"kv_pool_bytes\": " << e.kv_pool_bytes()
      << ", \"max_batch\": " << max_batch << ", \"prefill_chunk\": " << chunk << ", \"rows\": [";
    for (size_t i = 0; i < runs.size(); ++i) {
      const Run& r = runs[i];
      f << (i ? ", " : "") << "{\"label\": \"" << r.label << "\", \"strategy\": \"" << r.name << "\", \"knobs\": \""
        << JsonEscape(r.knobs) << "\", \"predict_bytes\": " << r.predict_bytes << ", \"accepted\": " << r.accepted
        << ", \"rejected\": " << r.rejected << ", \"completed\": " << r.completed << ", \"cancelled\": " << r.cancelled
        << ", \"errors\": " << r.errors << ", \"peak_running\": " << r.peak_running
        << ", \"ratio_to_first\": " << (base > 0 ? r.peak_running / base : 0.0)
        << ", \"peak_kv_bytes_reserved\": " << r.peak_reserved << ", \"peak_kv_bytes_in_use\": " << r.peak_in_use
        << ", \"scheduler_peak_kv_bytes_in_use\": " << r.sched_peak_in_use << ", \"steps\": " << r.steps
        << ", \"tokens\": " << r.tokens << ", \"wall_s\": " << r.wall_s << ", \"first_error\": \""
        << JsonEscape(r.first_error) << "\"}";
    }
    f << "]}\n";
    if (!f) {
      std::fprintf(stderr, "error: could not write %s\n", path.c_str());
      return 1;
    }
  }
  return failed ? 1 : 0;
}
