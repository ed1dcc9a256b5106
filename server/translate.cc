#include "server/translate.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvstream::server {
namespace {

using google::protobuf::FieldDescriptor;

absl::Status CheckUtf8(const std::string& s, const std::string& field) {
  // Protobuf already rejects invalid UTF-8 in string fields on parse; this
  // guards strings built by other means (e.g. an in-process caller).
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return absl::InvalidArgumentError(absl::StrCat(field, " is not valid UTF-8"));
    for (int k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) {
        return absl::InvalidArgumentError(absl::StrCat(field, " is not valid UTF-8"));
      }
    }
    i += n;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StrategyConfig> ToStrategyConfig(const v1::KvCompression& kv) {
  StrategyConfig c;
  const auto* oneof = v1::KvCompression::descriptor()->FindOneofByName("strategy");
  const auto* refl = kv.GetReflection();
  const FieldDescriptor* chosen = refl->GetOneofFieldDescriptor(kv, oneof);
  if (chosen == nullptr) return c;  // unset = dense
  c.strategy = chosen->name();
  const google::protobuf::Message& m = refl->GetMessage(kv, chosen);
  std::vector<const FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);  // only fields that are set
  const auto* r = m.GetReflection();
  for (const FieldDescriptor* f : fields) {
    if (f->is_repeated()) {
      return absl::InvalidArgumentError(absl::StrCat("kv_compression.", c.strategy, ".", f->name(),
                                                     ": repeated knobs are not supported"));
    }
    KnobValue v;
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: v = static_cast<int64_t>(r->GetInt32(m, f)); break;
      case FieldDescriptor::CPPTYPE_INT64: v = r->GetInt64(m, f); break;
      case FieldDescriptor::CPPTYPE_UINT32: v = static_cast<int64_t>(r->GetUInt32(m, f)); break;
      case FieldDescriptor::CPPTYPE_UINT64: {
        const uint64_t u = r->GetUInt64(m, f);
        if (u > static_cast<uint64_t>(INT64_MAX)) {
          return absl::InvalidArgumentError(absl::StrCat("kv_compression.", c.strategy, ".", f->name(),
                                                         " is out of range (got ", u, ")"));
        }
        v = static_cast<int64_t>(u);
        break;
      }
      case FieldDescriptor::CPPTYPE_FLOAT: v = static_cast<double>(r->GetFloat(m, f)); break;
      case FieldDescriptor::CPPTYPE_DOUBLE: v = r->GetDouble(m, f); break;
      case FieldDescriptor::CPPTYPE_BOOL: v = r->GetBool(m, f); break;
      case FieldDescriptor::CPPTYPE_ENUM: {
        const auto* ev = r->GetEnum(m, f);
        v = ev != nullptr ? ev->name() : std::to_string(r->GetEnumValue(m, f));
        break;
      }
      case FieldDescriptor::CPPTYPE_STRING: v = r->GetString(m, f); break;
      default:
        return absl::InvalidArgumentError(absl::StrCat("kv_compression.", c.strategy, ".", f->name(),
                                                       ": unsupported knob type"));
    }
    c.knobs[f->name()] = std::move(v);
  }
  return c;
}

absl::StatusOr<GenerateSpec> ToSpec(const v1::GenerateRequest& req, const Tokenizer& tokenizer,
                                    int64_t context_length) {
  GenerateSpec spec;
  switch (req.input_case()) {
    case v1::GenerateRequest::kPrompt:
      if (req.prompt().empty()) return absl::InvalidArgumentError("prompt is empty");
      if (req.prompt().size() > kMaxPromptBytes) {
        return absl::InvalidArgumentError(absl::StrFormat("prompt must be at most %d bytes (got %d)",
                                                          kMaxPromptBytes, req.prompt().size()));
      }
      if (absl::Status s = CheckUtf8(req.prompt(), "prompt"); !s.ok()) return s;
      spec.prompt_ids = tokenizer.Encode(req.prompt(), /*add_special_tokens=*/true);
      break;
    case v1::GenerateRequest::kPromptTokenIds:
      if (req.prompt_token_ids().ids().empty()) return absl::InvalidArgumentError("prompt_token_ids.ids is empty");
      spec.prompt_ids.assign(req.prompt_token_ids().ids().begin(), req.prompt_token_ids().ids().end());
      break;
    case v1::GenerateRequest::kChat: {
      const auto& msgs = req.chat().messages();
      if (msgs.empty()) return absl::InvalidArgumentError("chat.messages is empty");
      if (msgs.size() > kMaxChatMessages) {
        return absl::InvalidArgumentError(absl::StrFormat("chat.messages must hold at most %d messages (got %d)",
                                                          kMaxChatMessages, msgs.size()));
      }
      std::vector<ChatMessage> chat;
      size_t bytes = 0;
      for (int i = 0; i < msgs.size(); ++i) {
        const std::string& role = msgs[i].role();
        if (role != "system" && role != "user" && role != "assistant") {
          return absl::InvalidArgumentError(absl::StrFormat(
              "chat.messages[%d].role must be system, user or assistant (got '%s')", i, role.substr(0, 64)));
        }
        bytes += msgs[i].content().size();
        chat.push_back({role, msgs[i].content()});
      }
      if (bytes > kMaxPromptBytes) {
        return absl::InvalidArgumentError(absl::StrFormat("chat content must be at most %d bytes (got %d)",
                                                          kMaxPromptBytes, bytes));
      }
      auto rendered = tokenizer.ApplyChatTemplate(chat, req.chat().add_generation_prompt());
      if (!rendered.ok()) return absl::FailedPreconditionError(rendered.status().message());
      spec.prompt_ids = tokenizer.Encode(*rendered, /*add_special_tokens=*/false);
      break;
    }
    default:
      return absl::InvalidArgumentError("input is empty: set prompt, prompt_token_ids or chat");
  }

  const v1::SamplingParams& s = req.sampling();
  const int64_t prompt = static_cast<int64_t>(spec.prompt_ids.size());
  if (s.has_max_new_tokens()) {
    spec.sampling.max_new_tokens = s.max_new_tokens();
  } else {
    // api.md default 128, shortened to what the context leaves (at least 1).
    spec.sampling.max_new_tokens = static_cast<int32_t>(std::max<int64_t>(1, std::min<int64_t>(128, context_length - prompt)));
  }
  if (s.has_temperature()) spec.sampling.temperature = s.temperature();
  if (s.has_top_p()) spec.sampling.top_p = s.top_p();
  if (s.has_top_k()) spec.sampling.top_k = s.top_k();
  if (s.has_repetition_penalty()) spec.sampling.repetition_penalty = s.repetition_penalty();
  if (s.has_seed()) spec.sampling.seed = s.seed();
  spec.sampling.ignore_eos = s.ignore_eos();
  if (s.stop_size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(absl::StrFormat("sampling.stop must hold at most %d strings (got %d)",
                                                      kMaxStopStrings, s.stop_size()));
  }
  for (int i = 0; i < s.stop_size(); ++i) {
    if (s.stop(i).empty() || s.stop(i).size() > kMaxStopBytes) {
      return absl::InvalidArgumentError(absl::StrFormat("sampling.stop[%d] must be 1..%d bytes (got %d)", i,
                                                        kMaxStopBytes, s.stop(i).size()));
    }
    spec.sampling.stop.push_back(s.stop(i));
  }
  spec.return_logprobs = req.return_logprobs();
  spec.top_logprobs = req.top_logprobs();
  spec.teacher_forced.assign(req.teacher_forced().ids().begin(), req.teacher_forced().ids().end());
  auto kv = ToStrategyConfig(req.kv_compression());
  if (!kv.ok()) return kv.status();
  spec.kv = std::move(*kv);
  return spec;
}

v1::TokenDelta ToProto(const StreamDelta& delta, const Tokenizer& tokenizer, bool with_logprobs) {
  v1::TokenDelta out;
  out.set_text(delta.text);
  for (const TokenOut& t : delta.tokens) {
    out.add_token_ids(t.id);
    if (!with_logprobs) continue;
    v1::TokenLogprob* lp = out.add_logprobs();
    lp->set_token_id(t.id);
    lp->set_logprob(t.logprob);
    for (const TopLogprobEntry& e : t.top) {
      v1::TopLogprob* top = lp->add_top();
      top->set_token_id(e.token_id);
      top->set_logprob(e.logprob);
      top->set_text(tokenizer.Decode({e.token_id}));  // U+FFFD for partial UTF-8
    }
  }
  return out;
}

void ToProto(const CacheReport& c, v1::CacheReport* out) {
  out->set_strategy(c.strategy);
  out->set_kv_bytes_device(c.kv_bytes_device);
  out->set_kv_bytes_host(c.kv_bytes_host);
  out->set_dense_equivalent_bytes(c.dense_equivalent_bytes);
  out->set_compression_ratio(c.compression_ratio);
  out->set_peak_kv_bytes(c.peak_kv_bytes);
  out->set_tokens_seen(c.tokens_seen);
  out->set_tokens_held(c.tokens_held);
  out->set_compression_ms(c.compression_ms);
  for (const auto& [k, v] : c.stats) (*out->mutable_stats())[k] = v;
  for (const LayerCacheReport& l : c.layers) {
    v1::LayerCacheReport* pl = out->add_layers();
    pl->set_layer(l.layer);
    pl->set_detail(l.detail);
    pl->set_bytes(l.bytes);
    pl->set_tokens_held(l.tokens_held);
    for (const auto& [k, v] : l.stats) (*pl->mutable_stats())[k] = v;
  }
}

v1::GenerateResult ToProto(const GenerateOutcome& o, const std::string& request_id) {
  v1::GenerateResult r;
  r.set_request_id(request_id);
  r.set_finish_reason(static_cast<v1::FinishReason>(static_cast<int>(o.finish)));
  r.mutable_usage()->set_prompt_tokens(o.prompt_tokens);
  r.mutable_usage()->set_completion_tokens(o.completion_tokens);
  v1::Timings* t = r.mutable_timings();
  t->set_queue_ms(o.timings.queue_ms);
  t->set_ttft_ms(o.timings.ttft_ms);
  t->set_total_ms(o.timings.total_ms);
  t->set_mean_itl_ms(o.timings.mean_itl_ms);
  t->set_p99_itl_ms(o.timings.p99_itl_ms);
  ToProto(o.cache, r.mutable_cache());
  return r;
}

}  // namespace kvstream::server
