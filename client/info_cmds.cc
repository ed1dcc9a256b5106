// kvstream tokenize, info (unary calls) and knobs (local: lists the --kv
// knobs from the proto descriptors).
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/knobs.h"
#include "client/output.h"
#include "google/protobuf/text_format.h"
#include "kvstream/v1/kvstream.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace kvstream::client {
namespace {

int PrintMessageJson(const google::protobuf::Message& message) {
  auto json = ToJson(message);
  if (!json.ok()) return ReportFailure(json.status());
  std::printf("%s\n", json->c_str());
  return kExitOk;
}

}  // namespace

int RunTokenize(const ParsedArgs& args) {
  if (!args.Has("text")) return ReportUsageError(absl::InvalidArgumentError("tokenize needs --text TEXT"));
  kvstream::v1::TokenizeRequest request;
  std::string text = absl::GetFlag(FLAGS_text);
  request.set_text(text == "-" ? ReadStdin() : text);
  request.set_add_special_tokens(absl::GetFlag(FLAGS_add_special_tokens));
  auto conn = Connection::Open(ConnectionOptionsFromFlags());
  if (!conn.ok()) return ReportUsageError(conn.status());

  grpc::ClientContext context;
  conn->Prepare(context);
  kvstream::v1::TokenizeResponse response;
  const grpc::Status status =
      kvstream::v1::Generation::NewStub(conn->channel())->Tokenize(&context, request, &response);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintMessageJson(response);

  std::printf("%d tokens\n", response.token_ids_size());
  for (int i = 0; i < response.token_ids_size(); ++i) {
    const std::string piece = i < response.pieces_size() ? response.pieces(i) : std::string();
    std::printf("%d\t%s\n", response.token_ids(i),
                nlohmann::json(piece).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  return kExitOk;
}

int RunInfo(const ParsedArgs& args) {
  auto conn = Connection::Open(ConnectionOptionsFromFlags());
  if (!conn.ok()) return ReportUsageError(conn.status());
  grpc::ClientContext context;
  conn->Prepare(context);
  kvstream::v1::ModelInfo info;
  const grpc::Status status = kvstream::v1::Generation::NewStub(conn->channel())
                                  ->GetModelInfo(&context, kvstream::v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return ReportRpcError(status);
  if (absl::GetFlag(FLAGS_json)) return PrintMessageJson(info);

  // Every field in proto order, so fields added later show up too.
  std::string out;
  std::string text;
  const auto* desc = info.GetDescriptor();
  for (int i = 0; i < desc->field_count(); ++i) {
    const auto* field = desc->field(i);
    std::string value;
    if (field->is_repeated()) {
      std::vector<std::string> items;
      for (int j = 0; j < info.GetReflection()->FieldSize(info, field); ++j) {
        google::protobuf::TextFormat::PrintFieldValueToString(info, field, j, &text);
        items.push_back(text);
      }
      value = absl::StrJoin(items, ", ");
    } else {
      google::protobuf::TextFormat::PrintFieldValueToString(info, field, -1, &value);
    }
    if (field->name().find("bytes") != std::string::npos && field->cpp_type() == field->CPPTYPE_INT64) {
      absl::StrAppend(&value, " (", FormatBytes(info.GetReflection()->GetInt64(info, field)), ")");
    }
    absl::StrAppend(&out, field->name(), ": ", value, "\n");
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

int RunKnobs(const ParsedArgs& args) {
  const std::string only = absl::GetFlag(FLAGS_strategy);
  std::vector<std::string> names = StrategyNames();
  if (!only.empty()) {
    auto field = FindStrategy(only);
    if (!field.ok()) return ReportUsageError(field.status());
    names = {only};
  }
  nlohmann::json json = nlohmann::json::object();
  std::string out;
  for (const std::string& name : names) {
    const auto* config = (*FindStrategy(name))->message_type();
    absl::StrAppend(&out, name, " (", config->name(), ")", config->field_count() == 0 ? ": no knobs" : "", "\n");
    nlohmann::json knobs = nlohmann::json::object();
    for (int i = 0; i < config->field_count(); ++i) {
      const auto* knob = config->field(i);
      absl::StrAppend(&out, absl::StrFormat("  %-34s %s\n", knob->name(), KnobType(*knob)));
      knobs[knob->name()] = KnobType(*knob);
    }
    json[name] = std::move(knobs);
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", json.dump().c_str());
  } else {
    std::fputs(out.c_str(), stdout);
    std::fputs("Defaults and allowed ranges: the comments in proto/kvstream/v1/kvstream.proto.\n", stdout);
  }
  return kExitOk;
}

}  // namespace kvstream::client
