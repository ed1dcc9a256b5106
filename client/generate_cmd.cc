// kvstream generate: one streaming Generate call. Without --json the delta
// text goes to stdout as it arrives and a summary line to stderr; with --json
// one line: the GenerateResult's fields plus "text", "token_ids" and (when
// asked) "logprobs".
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <iterator>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/output.h"
#include "client/request.h"
#include "kvstream/v1/kvstream.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace kvstream::client {
namespace {

using kvstream::v1::GenerateRequest;
using kvstream::v1::GenerateResponse;
using kvstream::v1::GenerateResult;
using kvstream::v1::TokenLogprob;
using Clock = std::chrono::steady_clock;

GenerateOptions OptionsFromArgs(const ParsedArgs& a) {
  GenerateOptions o;
  if (a.Has("prompt")) {
    o.prompt = absl::GetFlag(FLAGS_prompt);
    if (*o.prompt == "-") o.prompt = ReadStdin();
  }
  o.chat = a.All("chat");
  if (a.Has("prompt_ids")) o.prompt_ids = absl::GetFlag(FLAGS_prompt_ids);
  o.add_generation_prompt = absl::GetFlag(FLAGS_add_generation_prompt);
  if (a.Has("teacher_forced")) o.teacher_forced = absl::GetFlag(FLAGS_teacher_forced);
  if (a.Has("max_new_tokens")) o.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  if (a.Has("temperature")) o.temperature = absl::GetFlag(FLAGS_temperature);
  if (a.Has("top_p")) o.top_p = absl::GetFlag(FLAGS_top_p);
  if (a.Has("top_k")) o.top_k = absl::GetFlag(FLAGS_top_k);
  if (a.Has("repetition_penalty")) o.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
  if (a.Has("seed")) o.seed = absl::GetFlag(FLAGS_seed);
  o.stop = a.All("stop");
  o.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  o.logprobs = absl::GetFlag(FLAGS_logprobs);
  o.top_logprobs = absl::GetFlag(FLAGS_top_logprobs);
  o.strategy = absl::GetFlag(FLAGS_strategy);
  o.kv = a.All("kv");
  o.request_id = absl::GetFlag(FLAGS_request_id);
  return o;
}

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Per-token logprobs, one line each, for the text mode (stderr).
void PrintLogprobs(const std::vector<TokenLogprob>& logprobs) {
  for (const TokenLogprob& lp : logprobs) {
    std::string line = absl::StrFormat("%d\t%.5f", lp.token_id(), lp.logprob());
    for (const auto& top : lp.top()) {
      absl::StrAppend(
          &line,
          absl::StrFormat("\t%d:%.5f:%s", top.token_id(), top.logprob(),
                          nlohmann::json(top.text()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    }
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

int PrintJson(const GenerateResult& result, const std::string& text, const std::vector<int32_t>& ids,
              const std::vector<TokenLogprob>& logprobs, bool with_logprobs) {
  auto json = ToJson(result);
  if (!json.ok()) return ReportFailure(json.status());
  // ordered_json keeps the proto's field order.
  nlohmann::ordered_json out = nlohmann::ordered_json::parse(*json);
  out["text"] = text;
  out["token_ids"] = ids;
  if (with_logprobs) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const TokenLogprob& lp : logprobs) {
      auto one = ToJson(lp);
      if (!one.ok()) return ReportFailure(one.status());
      list.push_back(nlohmann::ordered_json::parse(*one));
    }
    out["logprobs"] = std::move(list);
  }
  // NOTE(client): error_handler_t::replace: a server that split a UTF-8
  // character would otherwise make dump() throw.
  std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  return kExitOk;
}

}  // namespace

std::string ReadStdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

std::string FormatBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? absl::StrCat(bytes, " B") : absl::StrFormat("%.2f %s", v, units[u]);
}

std::string FormatSummary(const GenerateResult& r, double client_ttft_ms, double client_total_ms) {
  const auto& t = r.timings();
  const double ttft = t.ttft_ms() > 0 ? t.ttft_ms() : client_ttft_ms;
  const double total = t.total_ms() > 0 ? t.total_ms() : client_total_ms;
  const int n = r.usage().completion_tokens();
  // Decode rate: tokens after the first over the time after the first.
  double rate = 0;
  if (n > 1 && total > ttft) {
    rate = (n - 1) / ((total - ttft) / 1000.0);
  } else if (n > 0 && total > 0) {
    rate = n / (total / 1000.0);
  }
  const auto& c = r.cache();
  std::string finish = kvstream::v1::FinishReason_Name(r.finish_reason());
  if (finish.rfind("FINISH_REASON_", 0) == 0) finish = finish.substr(14);
  return absl::StrFormat(
      "[kvstream] %d tokens (prompt %d) | ttft %.1f ms | %.1f tok/s | kv %s (device %d B, host %d B, peak %s) | "
      "ratio %.2fx | finish %s | strategy %s",
      n, r.usage().prompt_tokens(), ttft, rate, FormatBytes(c.kv_bytes_device() + c.kv_bytes_host()),
      c.kv_bytes_device(), c.kv_bytes_host(), FormatBytes(c.peak_kv_bytes()), c.compression_ratio(), finish,
      c.strategy().empty() ? "?" : c.strategy());
}

int RunGenerate(const ParsedArgs& args) {
  auto request = BuildGenerateRequest(OptionsFromArgs(args));
  if (!request.ok()) return ReportUsageError(request.status());
  auto conn = Connection::Open(ConnectionOptionsFromFlags());
  if (!conn.ok()) return ReportUsageError(conn.status());
  const bool json = absl::GetFlag(FLAGS_json);
  const bool with_logprobs = request->return_logprobs();

  auto stub = kvstream::v1::Generation::NewStub(conn->channel());
  grpc::ClientContext context;
  conn->Prepare(context);
  const Clock::time_point start = Clock::now();
  double ttft_ms = 0;
  auto reader = stub->Generate(&context, *request);

  GenerateResponse response;
  std::optional<GenerateResult> result;
  std::string text;
  std::vector<int32_t> ids;
  std::vector<TokenLogprob> logprobs;
  bool ends_with_newline = true;
  while (reader->Read(&response)) {
    if (response.has_delta()) {
      const auto& d = response.delta();
      if (ttft_ms == 0 && d.token_ids_size() > 0) ttft_ms = MsSince(start);
      ids.insert(ids.end(), d.token_ids().begin(), d.token_ids().end());
      logprobs.insert(logprobs.end(), d.logprobs().begin(), d.logprobs().end());
      if (json) {
        text += d.text();
      } else if (!d.text().empty()) {
        std::fwrite(d.text().data(), 1, d.text().size(), stdout);
        std::fflush(stdout);
        ends_with_newline = d.text().back() == '\n';
      }
    } else if (response.has_result()) {
      result = response.result();
    }
  }
  const grpc::Status status = reader->Finish();
  const double total_ms = MsSince(start);
  // Keep the terminal tidy; a pipe gets the generated text unchanged.
  if (!json && !ends_with_newline && isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  std::fflush(stdout);
  if (!status.ok()) return ReportRpcError(status);
  if (!result) {
    return ReportFailure(absl::InternalError("the stream ended without a GenerateResult"));
  }
  if (json) return PrintJson(*result, text, ids, logprobs, with_logprobs);
  if (with_logprobs) PrintLogprobs(logprobs);
  std::fprintf(stderr, "%s\n", FormatSummary(*result, ttft_ms, total_ms).c_str());
  return kExitOk;
}

}  // namespace kvstream::client
