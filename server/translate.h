// Proto <-> engine translation. The engine never sees a proto; the server
// never builds engine state by hand.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/kv/strategy_config.h"
#include "engine/runtime/generation.h"
#include "engine/scheduler/scheduler.h"
#include "engine/tokenizer/tokenizer.h"
#include "kvstream/v1/kvstream.pb.h"

namespace kvstream::server {

// Limits on what one request may carry (checked before tokenizing).
inline constexpr size_t kMaxPromptBytes = 4 << 20;
inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopBytes = 256;
inline constexpr int kMaxChatMessages = 1024;

// Request -> GenerateSpec: tokenizes the input, applies api.md defaults, and
// checks proto-level limits. Range checks against the model live in
// Engine::Validate (called by the scheduler on submit).
absl::StatusOr<GenerateSpec> ToSpec(const v1::GenerateRequest& req, const Tokenizer& tokenizer,
                                    int64_t context_length);

// The oneof case and every set knob, read generically through reflection so a
// new knob in the proto needs no code here.
absl::StatusOr<StrategyConfig> ToStrategyConfig(const v1::KvCompression& kv);

v1::TokenDelta ToProto(const StreamDelta& delta, const Tokenizer& tokenizer, bool with_logprobs);
v1::GenerateResult ToProto(const GenerateOutcome& outcome, const std::string& request_id);
void ToProto(const CacheReport& report, v1::CacheReport* out);

}  // namespace kvstream::server
