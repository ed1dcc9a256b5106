// Every flag of the kvstream CLI, defined once in flags.cc. Which command
// accepts which flag is the table in cli.cc. Scalars that map to `optional`
// proto fields are sent only when given on the command line (ParsedArgs::Has),
// so the server's defaults apply otherwise.
#pragma once

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

// Connection (every command that talks to a server).
ABSL_DECLARE_FLAG(std::string, target);
ABSL_DECLARE_FLAG(std::string, tls_ca);
ABSL_DECLARE_FLAG(std::string, auth_token_file);
ABSL_DECLARE_FLAG(std::string, timeout);
ABSL_DECLARE_FLAG(bool, json);

// generate: input (exactly one of prompt, chat, prompt_ids).
ABSL_DECLARE_FLAG(std::string, prompt);
ABSL_DECLARE_FLAG(std::string, chat);  // repeatable: read through ParsedArgs::All
ABSL_DECLARE_FLAG(std::string, prompt_ids);
ABSL_DECLARE_FLAG(bool, add_generation_prompt);
ABSL_DECLARE_FLAG(std::string, teacher_forced);

// generate: SamplingParams.
ABSL_DECLARE_FLAG(int32_t, max_new_tokens);
ABSL_DECLARE_FLAG(float, temperature);
ABSL_DECLARE_FLAG(float, top_p);
ABSL_DECLARE_FLAG(int32_t, top_k);
ABSL_DECLARE_FLAG(float, repetition_penalty);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, stop);  // repeatable
ABSL_DECLARE_FLAG(bool, ignore_eos);

// generate: the rest of GenerateRequest.
ABSL_DECLARE_FLAG(bool, logprobs);
ABSL_DECLARE_FLAG(int32_t, top_logprobs);
ABSL_DECLARE_FLAG(std::string, strategy);
ABSL_DECLARE_FLAG(std::string, kv);  // repeatable
ABSL_DECLARE_FLAG(std::string, request_id);

// tokenize, health.
ABSL_DECLARE_FLAG(std::string, text);
ABSL_DECLARE_FLAG(bool, add_special_tokens);
ABSL_DECLARE_FLAG(std::string, service);
