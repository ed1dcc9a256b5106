#include "client/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "server address host:port; dns:///host:port resolves every address and balances "
          "round-robin over them");
ABSL_FLAG(std::string, tls_ca, "", "PEM file of root certificates: connect with TLS (empty = plaintext)");
ABSL_FLAG(std::string, auth_token_file, "", "file holding a bearer token, sent as `authorization: Bearer <token>`");
ABSL_FLAG(std::string, timeout, "", "deadline of the call: seconds (2.5) or a duration (500ms, 2m); empty = none");
ABSL_FLAG(bool, json, false, "print the reply as one line of JSON (proto field names)");

ABSL_FLAG(std::string, prompt, "", "raw prompt text; - reads standard input");
ABSL_FLAG(std::string, chat, "",
          "a chat message role:content (repeatable, in order), or JSON: [{\"role\":..,\"content\":..}, ...] "
          "or {\"messages\":[...],\"add_generation_prompt\":true}");
ABSL_FLAG(std::string, prompt_ids, "", "already tokenized prompt: token ids 1,2,3");
ABSL_FLAG(bool, add_generation_prompt, true, "with --chat: end the rendered chat with the assistant's turn");
ABSL_FLAG(std::string, teacher_forced, "",
          "token ids 1,2,3 to decode one step at a time instead of sampling, returning each one's logprob");

ABSL_FLAG(int32_t, max_new_tokens, 128, "tokens to generate (server default 128)");
ABSL_FLAG(float, temperature, 1.0f, "sampling temperature; 0 = greedy (server default 1.0)");
ABSL_FLAG(float, top_p, 1.0f, "nucleus mass in (0, 1]");
ABSL_FLAG(int32_t, top_k, 0, "keep the k most likely tokens; 0 = off");
ABSL_FLAG(float, repetition_penalty, 1.0f, "> 0; 1 = off");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed: same seed + same request = same tokens");
ABSL_FLAG(std::string, stop, "", "stop string (repeatable, or a comma list; \\, is a literal comma)");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past end-of-sequence");

ABSL_FLAG(bool, logprobs, false, "return the logprob of each generated token");
ABSL_FLAG(int32_t, top_logprobs, 0, "0..20 alternatives per token (implies --logprobs)");
ABSL_FLAG(std::string, strategy, "",
          "KV-cache strategy: dense, sam_gate, spectral_quant, entmax_kv, akv, laser_kv (empty = dense)");
ABSL_FLAG(std::string, kv, "",
          "strategy knobs name=value,... (repeatable); `kvstream knobs` lists them. Enums take the "
          "value name, with or without its prefix (fifo = AKV_SCORING_STRATEGY_FIFO)");
ABSL_FLAG(std::string, request_id, "", "request id, echoed back (the server makes one if empty)");

ABSL_FLAG(std::string, text, "", "text to tokenize; - reads standard input");
ABSL_FLAG(bool, add_special_tokens, false, "add the model's special tokens (e.g. BOS)");
ABSL_FLAG(std::string, service, "", "service name to check (empty = the whole server)");
