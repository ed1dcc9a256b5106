#include "engine/tokenizer/chat_format.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer/byte_level.h"

namespace kvstream::tok_internal {
namespace {

constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";
constexpr std::string_view kStartHeader = "<|start_header_id|>";
constexpr std::string_view kEndHeader = "<|end_header_id|>";
constexpr std::string_view kEotId = "<|eot_id|>";

// Finds the first '<|im_start|>system' + newline + literal + '<|im_end|>'
// whose literal contains no Jinja syntax, i.e. a fixed default prompt rather
// than "'<|im_start|>system\n' + messages[0]['content'] + ...". The newline
// may be a real one (GGUF metadata) or the two characters "\n" (Jinja source
// from tokenizer_config.json), and both spellings are resolved in the text.
bool FindDefaultSystem(std::string_view t, std::string* out) {
  const std::string head = absl::StrCat(Av(kImStart), "system");
  for (size_t at = t.find(head); at != std::string_view::npos; at = t.find(head, at + 1)) {
    size_t pos = at + head.size();
    if (t.substr(pos, 1) == "\n") {
      pos += 1;
    } else if (t.substr(pos, 2) == "\\n") {
      pos += 2;
    } else {
      continue;
    }
    const size_t end = t.find(kImEnd, pos);
    if (end == std::string_view::npos) return false;
    const std::string_view literal = t.substr(pos, end - pos);
    if (literal.find_first_of("'\"{}+") != std::string_view::npos) continue;
    out->clear();
    for (size_t i = 0; i < literal.size(); ++i) {
      if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'n') {
        out->push_back('\n');
        ++i;
      } else {
        out->push_back(literal[i]);
      }
    }
    return true;
  }
  return false;
}

// Python's str.strip() set (what Jinja's `trim` uses): ASCII whitespace,
// \x1c-\x1f, and the Unicode White_Space code points.
bool IsPyWhitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string_view Trim(std::string_view s) {
  size_t begin = 0;
  while (begin < s.size()) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(s, begin, &cp);
    if (len == 0 || !IsPyWhitespace(cp)) break;
    begin += len;
  }
  size_t end = s.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    uint32_t cp = 0;
    if (DecodeUtf8(s, start, &cp) != end - start || !IsPyWhitespace(cp)) break;
    end = start;
  }
  return s.substr(begin, end - begin);
}

}  // namespace

ChatTemplateInfo AnalyzeChatTemplate(std::string_view jinja) {
  ChatTemplateInfo info;
  if (jinja.find(kImStart) != std::string_view::npos && jinja.find(kImEnd) != std::string_view::npos) {
    info.format = ChatFormat::kChatML;
    info.has_default_system = FindDefaultSystem(jinja, &info.default_system);
  } else if (jinja.find(kStartHeader) != std::string_view::npos &&
             jinja.find(kEotId) != std::string_view::npos) {
    info.format = ChatFormat::kLlama3;
    info.trim_content = jinja.find("| trim") != std::string_view::npos ||
                        jinja.find("|trim") != std::string_view::npos;
  }
  return info;
}

absl::StatusOr<std::string> RenderChat(const ChatTemplateInfo& info, std::string_view bos_text,
                                       absl::Span<const ChatMessage> messages, bool add_generation_prompt) {
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role is empty"));
    }
  }
  std::string out;
  switch (info.format) {
    case ChatFormat::kChatML:
      // SmolLM2 and Qwen2 both insert their default system turn only when
      // there is a first message and it is not a system one.
      if (info.has_default_system && !messages.empty() && messages[0].role != "system") {
        absl::StrAppend(&out, Av(kImStart), "system\n", info.default_system, Av(kImEnd), "\n");
      }
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, Av(kImStart), m.role, "\n", m.content, Av(kImEnd), "\n");
      }
      if (add_generation_prompt) absl::StrAppend(&out, Av(kImStart), "assistant\n");
      return out;
    case ChatFormat::kLlama3:
      // The template prepends bos_token to the first message only.
      if (!messages.empty()) out.append(bos_text);
      for (const ChatMessage& m : messages) {
        const std::string_view content = info.trim_content ? Trim(m.content) : std::string_view(m.content);
        absl::StrAppend(&out, Av(kStartHeader), m.role, Av(kEndHeader), "\n\n", Av(content), Av(kEotId));
      }
      if (add_generation_prompt) absl::StrAppend(&out, Av(kStartHeader), "assistant", Av(kEndHeader), "\n\n");
      return out;
    case ChatFormat::kNone:
    default:
      return absl::FailedPreconditionError(
          "the model has no chat template kvstream recognises (ChatML or Llama-3)");
  }
}

}  // namespace kvstream::tok_internal
