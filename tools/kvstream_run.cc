// kvstream-run: the engine alone, no server. Streams the generated text, then
// one line of figures: prompt tokens, generated tokens, prefill tok/s, decode
// tok/s, KV bytes held.
//
//   build/kvstream-run --model models/SmolLM2-135M-Instruct.Q4_1.gguf \
//       --prompt "The capital of France is" --max-new-tokens 32 --temperature 0
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "engine/kv/strategy_config.h"
#include "engine/runtime/engine.h"
#include "tools/argv_dashes.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct.Q4_1.gguf", "GGUF file or Hugging Face folder");
ABSL_FLAG(std::string, prompt, "Once upon a time", "prompt text");
ABSL_FLAG(bool, chat, false, "wrap the prompt as one user message in the model's chat format");
ABSL_FLAG(int32_t, max_new_tokens, 64, "tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "0 = greedy");
ABSL_FLAG(double, top_p, 1.0, "nucleus mass (0, 1]");
ABSL_FLAG(int32_t, top_k, 0, "0 = off");
ABSL_FLAG(double, repetition_penalty, 1.0, "1 = off");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past end-of-sequence");
ABSL_FLAG(std::string, device, "auto", "auto | cpu | cuda");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0 = all cores)");
ABSL_FLAG(std::string, strategy, "dense", "KV-cache strategy");
ABSL_FLAG(std::string, kv, "", "strategy knobs: name=value,...");
ABSL_FLAG(std::string, synthetic, "", "random weights of this architecture instead of --model (llama3-8b, ...)");
ABSL_FLAG(bool, quiet, false, "print only the figures line");

int main(int argc, char** argv) {
  kvstream::DashesToUnderscores(argc, argv);
  absl::ParseCommandLine(argc, argv);
  // stdout carries only the generated text (tests compare it with the
  // server's stream); the engine's log lines go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("kvstream-run"));
  kvstream::EngineOptions opts;
  opts.model_path = absl::GetFlag(FLAGS_model);
  opts.device = absl::GetFlag(FLAGS_device);
  opts.threads = absl::GetFlag(FLAGS_threads);
  opts.synthetic = absl::GetFlag(FLAGS_synthetic);
  std::fprintf(stderr, "loading %s ...\n", opts.model_path.c_str());
  auto engine = kvstream::Engine::Load(opts);
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  kvstream::Engine& e = **engine;
  std::fprintf(stderr, "loaded %s on %s (%s) in %.0f ms\n", e.config().name.c_str(), e.device_name().c_str(),
               e.dtype_name().c_str(), e.load_ms());

  kvstream::GenerateSpec spec;
  std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (absl::GetFlag(FLAGS_chat)) {
    std::vector<kvstream::ChatMessage> msgs = {{"user", prompt}};
    auto rendered = e.tokenizer().ApplyChatTemplate(msgs, /*add_generation_prompt=*/true);
    if (!rendered.ok()) {
      std::fprintf(stderr, "error: %s\n", rendered.status().ToString().c_str());
      return 1;
    }
    prompt = *rendered;
  }
  spec.prompt_ids = e.tokenizer().Encode(prompt, /*add_special_tokens=*/true);
  spec.sampling.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  spec.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  spec.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  spec.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  spec.sampling.repetition_penalty = static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty));
  spec.sampling.seed = absl::GetFlag(FLAGS_seed);
  spec.sampling.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  spec.kv.strategy = absl::GetFlag(FLAGS_strategy);
  auto knobs = kvstream::ParseKnobList(absl::GetFlag(FLAGS_kv));
  if (!knobs.ok()) {
    std::fprintf(stderr, "error: --kv: %s\n", knobs.status().message().data());
    return 2;
  }
  spec.kv.knobs = *knobs;

  const bool quiet = absl::GetFlag(FLAGS_quiet);
  auto result = e.GenerateBatch({spec}, [&](size_t, const kvstream::StreamDelta& d) {
    if (!quiet) {
      std::fwrite(d.text.data(), 1, d.text.size(), stdout);
      std::fflush(stdout);
    }
  });
  if (!result.ok()) {
    std::fprintf(stderr, "\nerror: %s\n", result.status().ToString().c_str());
    return 1;
  }
  const kvstream::GenerateOutcome& o = (*result)[0];
  const double prefill_tps = o.timings.prefill_ms > 0 ? o.prompt_tokens * 1000.0 / o.timings.prefill_ms : 0;
  const double decode_ms = o.timings.total_ms - o.timings.ttft_ms;
  const double decode_tps = o.completion_tokens > 1 && decode_ms > 0 ? (o.completion_tokens - 1) * 1000.0 / decode_ms : 0;
  if (!quiet) std::printf("\n");
  std::printf(
      "prompt_tokens=%d generated_tokens=%d prefill_tok_s=%.1f decode_tok_s=%.2f kv_bytes=%lld "
      "ttft_ms=%.1f strategy=%s\n",
      o.prompt_tokens, o.completion_tokens, prefill_tps, decode_tps,
      static_cast<long long>(o.cache.kv_bytes_device + o.cache.kv_bytes_host), o.timings.ttft_ms,
      o.cache.strategy.c_str());
  return 0;
}
