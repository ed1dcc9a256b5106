// Chat formatting: SmolLM2 against transformers' apply_chat_template
// (fixture smollm2_chat.jsonl); Qwen-style and Llama-3 templates against the
// strings their templates are documented to produce.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/tokenizer/tokenizer_test_util.h"

namespace kvstream {
namespace {

using testing::AddControl;
using testing::TinyByteLevelData;

std::vector<ChatMessage> Messages(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j) out.push_back({m["role"], m["content"]});
  return out;
}

std::unique_ptr<Tokenizer> TinyWithTemplate(const std::string& tmpl, bool llama3 = false) {
  TokenizerData d = TinyByteLevelData();
  if (llama3) {
    d.bos_id = AddControl(d, "<|begin_of_text|>");
    d.eos_id = AddControl(d, "<|end_of_text|>");
    AddControl(d, "<|start_header_id|>");
    AddControl(d, "<|end_header_id|>");
    AddControl(d, "<|eot_id|>");
  } else {
    AddControl(d, "<|endoftext|>");
    AddControl(d, "<|im_start|>");
    d.eos_id = AddControl(d, "<|im_end|>");
  }
  d.chat_template = tmpl;
  auto tok = Tokenizer::Create(std::move(d));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? *std::move(tok) : nullptr;
}

TEST(ChatTemplate, SmolLM2RenderingEqualsTransformersApplyChatTemplate) {
  KV_GET_SMOL_TOKENIZER(tok);
  const auto rows = testing::ReadJsonl(testing::TokenizerFixture("smollm2_chat.jsonl"));
  ASSERT_GE(rows.size(), 10u);
  for (const auto& row : rows) {
    const auto messages = Messages(row["messages"]);
    const bool gen = row["add_generation_prompt"];
    auto text = tok->ApplyChatTemplate(messages, gen);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, row["text"].get<std::string>());
    EXPECT_EQ(tok->Encode(*text, false), testing::IdsOf(row["ids"])) << *text;
  }
}

TEST(ChatTemplate, SmolLM2DefaultSystemPromptOnlyWhenFirstMessageIsNotSystem) {
  KV_GET_SMOL_TOKENIZER(tok);
  const std::string def =
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";
  auto with_user = tok->ApplyChatTemplate({{"user", "Hi"}}, true);
  ASSERT_TRUE(with_user.ok());
  EXPECT_EQ(*with_user, def + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  auto with_system = tok->ApplyChatTemplate({{"system", "S"}, {"user", "Hi"}}, false);
  ASSERT_TRUE(with_system.ok());
  EXPECT_EQ(*with_system, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  // The rule sits inside the message loop: no messages, no system turn.
  auto empty = tok->ApplyChatTemplate({}, true);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "<|im_start|>assistant\n");
}

TEST(ChatTemplate, QwenStyleEscapedDefaultSystemPromptIsExtracted) {
  // Jinja source as tokenizer_config.json holds it: "\n" is two characters,
  // and the first '<|im_start|>system' is followed by Jinja, not a literal.
  const std::string tmpl =
      R"({%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }})"
      R"({%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }})"
      R"({%- endif %}{%- for message in messages %}...{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }})";
  auto tok = TinyWithTemplate(tmpl);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->chat_format(), ChatFormat::kChatML);
  auto text = tok->ApplyChatTemplate({{"user", "1+1?"}}, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_TRUE(tok->IsEndOfGeneration(tok->Encode("<|im_end|>", false).at(0)));
}

TEST(ChatTemplate, ChatMLWithoutLiteralSystemPromptAddsNone) {
  auto tok = TinyWithTemplate(
      R"({% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %})");
  ASSERT_NE(tok, nullptr);
  auto text = tok->ApplyChatTemplate({{"user", "x"}, {"assistant", "y"}}, false);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\ny<|im_end|>\n");
}

TEST(ChatTemplate, Llama3RendersHeadersBosOnceAndTrimmedContent) {
  const std::string tmpl =
      R"({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + )"
      R"(message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %})"
      R"({% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %})"
      R"({{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})";
  auto tok = TinyWithTemplate(tmpl, /*llama3=*/true);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->chat_format(), ChatFormat::kLlama3);
  auto text = tok->ApplyChatTemplate({{"system", "Be brief."}, {"user", "  Hi there \n"}}, true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  const auto ids = tok->Encode(*text, false);
  EXPECT_EQ(ids.front(), tok->bos_id());
  EXPECT_TRUE(tok->IsEndOfGeneration(tok->Encode("<|eot_id|>", false).at(0)));
  EXPECT_TRUE(tok->IsEndOfGeneration(tok->eos_id()));
}

TEST(ChatTemplate, MissingOrUnknownTemplateIsFailedPrecondition) {
  for (const std::string tmpl : {"", "{{ messages[0]['content'] }}"}) {
    auto tok = TinyWithTemplate(tmpl);
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->chat_format(), ChatFormat::kNone);
    EXPECT_EQ(tok->ApplyChatTemplate({{"user", "x"}}, true).status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

TEST(ChatTemplate, EmptyRoleIsInvalidArgument) {
  KV_GET_SMOL_TOKENIZER(tok);
  auto text = tok->ApplyChatTemplate({{"user", "a"}, {"", "b"}}, false);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(text.status().message()), ::testing::HasSubstr("messages[1].role"));
}

}  // namespace
}  // namespace kvstream
