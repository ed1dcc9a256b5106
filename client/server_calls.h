// Calls that `kvstream bench` and `kvstream eval` make many times, from many
// threads: one streaming Generate with client-side timings, Tokenize behind
// the TextTokenizer interface (so prompt building is testable offline), and
// GetModelInfo.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/channel.h"
#include "grpcpp/support/status.h"
#include "kvstream/v1/kvstream.grpc.pb.h"

namespace kvstream::client {

using SteadyClock = std::chrono::steady_clock;

// Token ids and the text of each (pieces[i] decodes ids[i]).
struct Tokens {
  std::vector<int32_t> ids;
  std::vector<std::string> pieces;
  size_t size() const { return ids.size(); }
};

class TextTokenizer {
 public:
  virtual ~TextTokenizer() = default;
  // Without special tokens added (the text may name them, e.g. <|im_start|>).
  virtual absl::StatusOr<Tokens> Tokenize(const std::string& text) = 0;
};

// The server's tokenizer (Tokenize RPC). Thread-safe.
class RemoteTokenizer final : public TextTokenizer {
 public:
  explicit RemoteTokenizer(const Connection& conn);
  absl::StatusOr<Tokens> Tokenize(const std::string& text) override;

 private:
  const Connection& conn_;
  std::unique_ptr<kvstream::v1::Generation::Stub> stub_;
};

// What one Generate stream gave, timed by the client.
struct CallOutcome {
  grpc::Status status;
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<float> logprobs;  // one per token when return_logprobs
  std::optional<kvstream::v1::GenerateResult> result;
  double ttft_ms = -1;          // `start` -> first delta carrying tokens; -1 = none came
  double e2e_ms = 0;            // `start` -> end of the stream
  std::vector<double> itl_ms;   // gap between deltas carrying tokens, split evenly over a delta's tokens
};

// Runs one Generate to its end. `start` is when the request counts as
// issued: now in a closed loop, the scheduled arrival in an open loop (so
// time spent waiting for a free worker is part of the latency).
CallOutcome CallGenerate(const Connection& conn, kvstream::v1::Generation::Stub& stub,
                         const kvstream::v1::GenerateRequest& request, SteadyClock::time_point start);

absl::StatusOr<kvstream::v1::ModelInfo> FetchModelInfo(const Connection& conn);

}  // namespace kvstream::client
