// GenerateRequest from the generate command's options: no flags, no I/O, so
// the translation is unit-tested alone (tests/client/args_test.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kvstream/v1/kvstream.pb.h"

namespace kvstream::client {

struct GenerateOptions {
  // Input: exactly one of the three.
  std::optional<std::string> prompt;
  std::vector<std::string> chat;          // each "role:content" or a JSON list/object
  std::optional<std::string> prompt_ids;  // "1,2,3"
  bool add_generation_prompt = true;
  std::optional<std::string> teacher_forced;  // "1,2,3"

  // SamplingParams: unset stays unset (server default).
  std::optional<int32_t> max_new_tokens;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> repetition_penalty;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // each a comma list
  bool ignore_eos = false;

  bool logprobs = false;
  int32_t top_logprobs = 0;     // > 0 implies logprobs
  std::string strategy;         // "" = leave kv_compression unset (dense)
  std::vector<std::string> kv;  // each "name=value,..."
  std::string request_id;
};

// InvalidArgument naming the flag for a missing or doubled input, bad ids,
// bad chat messages, unknown strategy or knob.
absl::StatusOr<kvstream::v1::GenerateRequest> BuildGenerateRequest(const GenerateOptions& options);

// "1, 2,3" or "[1,2,3]" -> {1,2,3}; every id an int32 >= 0. `flag` names the
// source in errors.
absl::StatusOr<std::vector<int32_t>> ParseTokenIds(absl::string_view flag, absl::string_view text);

// The --chat values, in order: "role:content" (split at the first ':'), or
// JSON [{"role":..,"content":..},...] or {"messages":[...],
// "add_generation_prompt":bool} (which overrides the flag).
absl::StatusOr<kvstream::v1::ChatMessages> ParseChat(const std::vector<std::string>& values,
                                                     bool add_generation_prompt);

// The --stop values split at commas ("\," is a literal comma); empty parts dropped.
std::vector<std::string> SplitStops(const std::vector<std::string>& values);

}  // namespace kvstream::client
