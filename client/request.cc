#include "client/request.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/knobs.h"
#include "nlohmann/json.hpp"

namespace kvstream::client {
namespace {

using kvstream::v1::ChatMessages;
using kvstream::v1::GenerateRequest;

absl::Status AddJsonMessage(const nlohmann::json& m, ChatMessages& out) {
  if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
      !m["content"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--chat: each JSON message needs string \"role\" and \"content\" (got ", m.dump(), ")"));
  }
  auto* msg = out.add_messages();
  msg->set_role(m["role"].get<std::string>());
  msg->set_content(m["content"].get<std::string>());
  return absl::OkStatus();
}

absl::Status AddJsonChat(absl::string_view text, ChatMessages& out) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("--chat: not valid JSON");
  const nlohmann::json* list = &doc;
  if (doc.is_object() && doc.contains("messages")) {
    list = &doc["messages"];
    if (doc.contains("add_generation_prompt")) {
      if (!doc["add_generation_prompt"].is_boolean()) {
        return absl::InvalidArgumentError("--chat: \"add_generation_prompt\" must be true or false");
      }
      out.set_add_generation_prompt(doc["add_generation_prompt"].get<bool>());
    }
  } else if (doc.is_object()) {
    return AddJsonMessage(doc, out);  // one message object
  }
  if (!list->is_array()) return absl::InvalidArgumentError("--chat: JSON \"messages\" must be a list");
  for (const auto& m : *list) {
    auto status = AddJsonMessage(m, out);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> ParseTokenIds(absl::string_view flag, absl::string_view text) {
  absl::string_view body = absl::StripAsciiWhitespace(text);
  if (absl::ConsumePrefix(&body, "[") && !absl::ConsumeSuffix(&body, "]")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": unbalanced '['"));
  }
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(body, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int32_t id = 0;
    if (!absl::SimpleAtoi(part, &id) || id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": '", part, "' is not a token id (ids are integers 0..2147483647, comma separated)"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": no token ids"));
  return ids;
}

absl::StatusOr<ChatMessages> ParseChat(const std::vector<std::string>& values, bool add_generation_prompt) {
  ChatMessages out;
  out.set_add_generation_prompt(add_generation_prompt);
  for (const std::string& value : values) {
    absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(value);
    if (!trimmed.empty() && (trimmed.front() == '[' || trimmed.front() == '{')) {
      auto status = AddJsonChat(trimmed, out);
      if (!status.ok()) return status;
      continue;
    }
    const size_t colon = value.find(':');
    absl::string_view role =
        colon == std::string::npos ? absl::string_view() : absl::string_view(value).substr(0, colon);
    role = absl::StripAsciiWhitespace(role);
    if (role.empty() || role.find(' ') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--chat '", value, "' is not role:content (e.g. user:Hello) or JSON"));
    }
    auto* msg = out.add_messages();
    msg->set_role(std::string(role));
    msg->set_content(value.substr(colon + 1));
  }
  if (out.messages_size() == 0) return absl::InvalidArgumentError("--chat: no messages");
  return out;
}

std::vector<std::string> SplitStops(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const std::string& value : values) {
    std::string cur;
    for (size_t i = 0; i < value.size(); ++i) {
      if (value[i] == '\\' && i + 1 < value.size() && value[i + 1] == ',') {
        cur.push_back(',');
        ++i;
      } else if (value[i] == ',') {
        if (!cur.empty()) out.push_back(std::move(cur));
        cur.clear();
      } else {
        cur.push_back(value[i]);
      }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
  }
  return out;
}

absl::StatusOr<GenerateRequest> BuildGenerateRequest(const GenerateOptions& o) {
  GenerateRequest req;
  const int inputs = int(o.prompt.has_value()) + int(!o.chat.empty()) + int(o.prompt_ids.has_value());
  if (inputs != 1) {
    return absl::InvalidArgumentError(
        inputs == 0 ? "generate needs an input: --prompt TEXT, --chat role:content or --prompt-ids 1,2,3"
                    : "give only one of --prompt, --chat and --prompt-ids");
  }
  if (o.prompt.has_value()) {
    req.set_prompt(*o.prompt);
  } else if (o.prompt_ids.has_value()) {
    auto ids = ParseTokenIds("--prompt-ids", *o.prompt_ids);
    if (!ids.ok()) return ids.status();
    req.mutable_prompt_token_ids()->mutable_ids()->Assign(ids->begin(), ids->end());
  } else {
    auto chat = ParseChat(o.chat, o.add_generation_prompt);
    if (!chat.ok()) return chat.status();
    *req.mutable_chat() = *std::move(chat);
  }
  if (o.teacher_forced.has_value()) {
    auto ids = ParseTokenIds("--teacher-forced", *o.teacher_forced);
    if (!ids.ok()) return ids.status();
    req.mutable_teacher_forced()->mutable_ids()->Assign(ids->begin(), ids->end());
  }

  auto& s = *req.mutable_sampling();
  if (o.max_new_tokens) s.set_max_new_tokens(*o.max_new_tokens);
  if (o.temperature) s.set_temperature(*o.temperature);
  if (o.top_p) s.set_top_p(*o.top_p);
  if (o.top_k) s.set_top_k(*o.top_k);
  if (o.repetition_penalty) s.set_repetition_penalty(*o.repetition_penalty);
  if (o.seed) s.set_seed(*o.seed);
  for (std::string& stop : SplitStops(o.stop)) s.add_stop(std::move(stop));
  s.set_ignore_eos(o.ignore_eos);

  if (o.top_logprobs < 0) return absl::InvalidArgumentError("--top-logprobs must be 0..20");
  req.set_return_logprobs(o.logprobs || o.top_logprobs > 0);
  req.set_top_logprobs(o.top_logprobs);
  auto status = ApplyStrategy(o.strategy, o.kv, *req.mutable_kv_compression());
  if (!status.ok()) return status;
  if (o.strategy.empty()) req.clear_kv_compression();
  req.set_request_id(o.request_id);
  return req;
}

}  // namespace kvstream::client
