// Private to engine/tokenizer/: recognising a model's chat template and
// rendering conversations in it without a Jinja engine.
//
// We do not interpret Jinja. A template is recognised by the markers it
// writes, and the two variable parts we know of are read from its text:
//  - ChatML (SmolLM2, Qwen2): a default system prompt written as the literal
//    '<|im_start|>system\n...<|im_end|>' that the template emits when the
//    first message is not a system one;
//  - Llama-3: whether message content goes through `| trim`.
// Anything else in a template (tools, dates, thinking blocks) is ignored.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/tokenizer.h"

namespace kvstream::tok_internal {

struct ChatTemplateInfo {
  ChatFormat format = ChatFormat::kNone;
  bool has_default_system = false;  // ChatML only
  std::string default_system;       // its text, "\n" escapes resolved
  bool trim_content = false;        // Llama-3 only: content | trim
};

// kNone for an empty or unrecognised template.
ChatTemplateInfo AnalyzeChatTemplate(std::string_view jinja);

// `bos_text` is the BOS token's text ("<|begin_of_text|>"), which the Llama-3
// template writes before the first message. InvalidArgument for a message
// with an empty role; FailedPrecondition if `info.format` is kNone.
absl::StatusOr<std::string> RenderChat(const ChatTemplateInfo& info, std::string_view bos_text,
                                       absl::Span<const ChatMessage> messages, bool add_generation_prompt);

}  // namespace kvstream::tok_internal
