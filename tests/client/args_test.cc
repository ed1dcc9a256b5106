// Command-line parsing (client/args.h) and GenerateRequest building
// (client/request.h), timeouts and the summary line. No server.
#include "client/args.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/request.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kvstream::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<ParsedArgs> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "kvstream");
  return ParseArgs(args);
}

TEST(ParseArgs, DashesAndUnderscoresNameTheSameFlag) {
  auto a = Parse({"generate", "--max-new-tokens=7", "--top_k", "3", "--repetition-penalty", "1.5"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "generate");
  EXPECT_TRUE(a->Has("max_new_tokens"));
  EXPECT_TRUE(a->Has("top_k"));
  EXPECT_EQ(absl::GetFlag(FLAGS_max_new_tokens), 7);
  EXPECT_EQ(absl::GetFlag(FLAGS_top_k), 3);
  EXPECT_FLOAT_EQ(absl::GetFlag(FLAGS_repetition_penalty), 1.5f);
  EXPECT_FALSE(a->Has("temperature"));
}

TEST(ParseArgs, CommandMayFollowFlags) {
  auto a = Parse({"--target", "dns:///example:1", "info", "--json"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "info");
  EXPECT_EQ(absl::GetFlag(FLAGS_target), "dns:///example:1");
  EXPECT_TRUE(absl::GetFlag(FLAGS_json));
  absl::SetFlag(&FLAGS_json, false);
  absl::SetFlag(&FLAGS_target, "127.0.0.1:50051");
}

TEST(ParseArgs, BoolFlagsTakeBareNoPrefixAndExplicitValues) {
  auto a = Parse({"generate", "--ignore-eos", "--noadd-generation-prompt", "--logprobs=false", "--no-json"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(absl::GetFlag(FLAGS_ignore_eos));
  EXPECT_FALSE(absl::GetFlag(FLAGS_add_generation_prompt));
  EXPECT_FALSE(absl::GetFlag(FLAGS_logprobs));
  EXPECT_THAT(a->All("add_generation_prompt"), ElementsAre("false"));
  EXPECT_THAT(a->All("json"), ElementsAre("false"));
  absl::SetFlag(&FLAGS_add_generation_prompt, true);
  absl::SetFlag(&FLAGS_ignore_eos, false);
}

TEST(ParseArgs, RepeatedFlagsKeepEveryValueInOrder) {
  auto a = Parse({"generate", "--chat", "system:Be brief.", "--stop=a,b", "--chat=user:Hi, there", "--stop", "c"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->All("chat"), ElementsAre("system:Be brief.", "user:Hi, there"));
  EXPECT_THAT(a->All("stop"), ElementsAre("a,b", "c"));
  EXPECT_THAT(a->All("kv"), ElementsAre());
}

TEST(ParseArgs, ValueMayStartWithDashesWhenSeparate) {
  auto a = Parse({"generate", "--prompt", "--not-a-flag", "--", "--also-positional"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_prompt), "--not-a-flag");
  EXPECT_THAT(a->positionals, ElementsAre("--also-positional"));
}

TEST(ParseArgs, HelpFormsAreRecognized) {
  for (const char* h : {"-h", "--help", "--helpfull"}) {
    auto a = Parse({"generate", h});
    ASSERT_TRUE(a.ok()) << h;
    EXPECT_TRUE(a->help) << h;
  }
}

TEST(ParseArgs, RejectsUnknownFlagMissingValueAndBadValue) {
  auto unknown = Parse({"generate", "--no-such-flag=1"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("unknown flag --no-such-flag"));

  auto missing = Parse({"generate", "--max-new-tokens"});
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--max-new-tokens needs a value"));

  auto bad = Parse({"generate", "--top-k=many"});
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("bad value 'many' for --top-k"));

  auto single_dash = Parse({"generate", "-x"});
  EXPECT_EQ(single_dash.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CheckFlagsAllowed, RejectsAFlagOfAnotherCommand) {
  auto a = Parse({"info", "--temperature=0"});
  ASSERT_TRUE(a.ok());
  const std::vector<absl::string_view> allowed = {"json", "target"};
  absl::Status status = CheckFlagsAllowed(*a, "info", allowed);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("--temperature is not a flag of `kvstream info`"));
  auto ok = Parse({"info", "--json"});
  EXPECT_TRUE(CheckFlagsAllowed(*ok, "info", allowed).ok());
}

TEST(BuildGenerateRequest, UnsetSamplingFieldsStayUnset) {
  GenerateOptions o;
  o.prompt = "hi";
  auto req = BuildGenerateRequest(o);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_EQ(req->prompt(), "hi");
  const auto& s = req->sampling();
  EXPECT_FALSE(s.has_max_new_tokens() || s.has_temperature() || s.has_top_p() || s.has_top_k() ||
               s.has_repetition_penalty() || s.has_seed());
  EXPECT_FALSE(req->has_kv_compression());
  EXPECT_FALSE(req->return_logprobs());
  EXPECT_FALSE(req->has_teacher_forced());
}

TEST(BuildGenerateRequest, GivenFieldsAreSetEvenWhenZero) {
  GenerateOptions o;
  o.prompt_ids = "[1, 2,3]";
  o.max_new_tokens = 8;
  o.temperature = 0.0f;
  o.top_k = 0;
  o.seed = 0;
  o.stop = {"a,b\\,c", ",d"};
  o.top_logprobs = 5;
  o.strategy = "akv";
  o.kv = {"hot_budget=256,scoring_strategy=fifo"};
  o.request_id = "r1";
  o.teacher_forced = "4,5";
  auto req = BuildGenerateRequest(o);
  ASSERT_TRUE(req.ok()) << req.status();
  EXPECT_THAT(req->prompt_token_ids().ids(), ElementsAre(1, 2, 3));
  EXPECT_TRUE(req->sampling().has_temperature());
  EXPECT_EQ(req->sampling().temperature(), 0.0f);
  EXPECT_TRUE(req->sampling().has_top_k());
  EXPECT_TRUE(req->sampling().has_seed());
  EXPECT_EQ(req->sampling().max_new_tokens(), 8);
  EXPECT_THAT(req->sampling().stop(), ElementsAre("a", "b,c", "d"));
  EXPECT_TRUE(req->return_logprobs());  // implied by top_logprobs
  EXPECT_EQ(req->top_logprobs(), 5);
  ASSERT_TRUE(req->kv_compression().has_akv());
  EXPECT_EQ(req->kv_compression().akv().hot_budget(), 256u);
  EXPECT_EQ(req->kv_compression().akv().scoring_strategy(), kvstream::v1::AkvConfig::AKV_SCORING_STRATEGY_FIFO);
  EXPECT_EQ(req->request_id(), "r1");
  EXPECT_THAT(req->teacher_forced().ids(), ElementsAre(4, 5));
}

TEST(BuildGenerateRequest, NeedsExactlyOneInput) {
  GenerateOptions none;
  EXPECT_THAT(std::string(BuildGenerateRequest(none).status().message()), HasSubstr("needs an input"));
  GenerateOptions two;
  two.prompt = "a";
  two.chat = {"user:b"};
  EXPECT_THAT(std::string(BuildGenerateRequest(two).status().message()), HasSubstr("only one of"));
}

TEST(BuildGenerateRequest, StrategyErrorsPassThrough) {
  GenerateOptions o;
  o.prompt = "hi";
  o.strategy = "akv";
  o.kv = {"hot_budgit=3"};
  auto req = BuildGenerateRequest(o);
  EXPECT_EQ(req.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(req.status().message()), HasSubstr("valid knobs: hot_budget"));
}

TEST(ParseChat, RoleColonContentKeepsLaterColons) {
  auto chat = ParseChat({"system:Be brief.", "user:What is 2:3?"}, true);
  ASSERT_TRUE(chat.ok()) << chat.status();
  ASSERT_EQ(chat->messages_size(), 2);
  EXPECT_EQ(chat->messages(0).role(), "system");
  EXPECT_EQ(chat->messages(1).content(), "What is 2:3?");
  EXPECT_TRUE(chat->add_generation_prompt());
}

TEST(ParseChat, JsonListObjectAndMixedForms) {
  auto chat = ParseChat({R"([{"role":"system","content":"s"},{"role":"user","content":"u"}])", "assistant:a",
                         R"({"role":"user","content":"again"})"},
                        true);
  ASSERT_TRUE(chat.ok()) << chat.status();
  ASSERT_EQ(chat->messages_size(), 4);
  EXPECT_EQ(chat->messages(2).role(), "assistant");
  EXPECT_EQ(chat->messages(3).content(), "again");

  auto wrapped = ParseChat({R"({"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false})"}, true);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_FALSE(wrapped->add_generation_prompt());
}

TEST(ParseChat, RejectsMalformedMessages) {
  for (const char* bad :
       {"no colon", ":empty role", "[{\"role\":\"user\"}]", "[1,2]", "{not json", "{\"messages\":3}"}) {
    EXPECT_EQ(ParseChat({bad}, true).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseTokenIds, RejectsNegativeEmptyAndNonNumbers) {
  for (const char* bad : {"", "1,,2", "-1", "a", "[1,2", "2147483648"}) {
    EXPECT_EQ(ParseTokenIds("--prompt-ids", bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(ParseTokenIds("--prompt-ids", " 0, 2147483647 ").value(), ElementsAre(0, 2147483647));
}

TEST(ParseTimeout, SecondsDurationsAndErrors) {
  EXPECT_FALSE(ParseTimeout("").value().has_value());
  EXPECT_EQ(*ParseTimeout("2.5").value(), absl::Milliseconds(2500));
  EXPECT_EQ(*ParseTimeout("500ms").value(), absl::Milliseconds(500));
  EXPECT_EQ(*ParseTimeout("2m").value(), absl::Minutes(2));
  for (const char* bad : {"0", "-1", "soon", "inf"}) {
    EXPECT_EQ(ParseTimeout(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(Connection, UnreadableFilesAreUsageErrorsNamingTheFlag) {
  ConnectionOptions o;
  o.tls_ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(std::string(Connection::Open(o).status().message()), HasSubstr("--tls-ca"));
  o.tls_ca_file.clear();
  o.auth_token_file = "/nonexistent/token";
  EXPECT_THAT(std::string(Connection::Open(o).status().message()), HasSubstr("--auth-token-file"));
}

TEST(FormatSummary, ShowsTokensTtftRateBytesRatioAndFinish) {
  kvstream::v1::GenerateResult r;
  r.set_finish_reason(kvstream::v1::FINISH_REASON_LENGTH);
  r.mutable_usage()->set_prompt_tokens(5);
  r.mutable_usage()->set_completion_tokens(11);
  r.mutable_timings()->set_ttft_ms(100);
  r.mutable_timings()->set_total_ms(600);  // 10 tokens after the first in 0.5 s
  r.mutable_cache()->set_strategy("akv");
  r.mutable_cache()->set_kv_bytes_device(2048);
  r.mutable_cache()->set_compression_ratio(3.5);
  const std::string line = FormatSummary(r, 0, 0);
  EXPECT_THAT(line, HasSubstr("11 tokens (prompt 5)"));
  EXPECT_THAT(line, HasSubstr("ttft 100.0 ms"));
  EXPECT_THAT(line, HasSubstr("20.0 tok/s"));
  EXPECT_THAT(line, HasSubstr("kv 2.00 KiB"));
  EXPECT_THAT(line, HasSubstr("ratio 3.50x"));
  EXPECT_THAT(line, HasSubstr("finish LENGTH"));
  EXPECT_THAT(line, HasSubstr("strategy akv"));
  // Without server timings the client's own are used.
  r.clear_timings();
  EXPECT_THAT(FormatSummary(r, 50, 1050), HasSubstr("ttft 50.0 ms"));
}

}  // namespace
}  // namespace kvstream::client
