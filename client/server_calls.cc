#include "client/server_calls.h"

#include "absl/strings/str_cat.h"
#include "client/output.h"

namespace kvstream::client {
namespace {

double MsBetween(SteadyClock::time_point from, SteadyClock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

absl::Status ToAbsl(const grpc::Status& s, absl::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), absl::StrCat(what, ": ", s.error_message()));
}

}  // namespace

RemoteTokenizer::RemoteTokenizer(const Connection& conn)
    : conn_(conn), stub_(kvstream::v1::Generation::NewStub(conn.channel())) {}

absl::StatusOr<Tokens> RemoteTokenizer::Tokenize(const std::string& text) {
  kvstream::v1::TokenizeRequest request;
  request.set_text(text);
  request.set_add_special_tokens(false);
  kvstream::v1::TokenizeResponse response;
  grpc::ClientContext context;
  conn_.Prepare(context);
  const grpc::Status status = stub_->Tokenize(&context, request, &response);
  if (!status.ok()) return ToAbsl(status, "Tokenize");
  Tokens out;
  out.ids.assign(response.token_ids().begin(), response.token_ids().end());
  out.pieces.assign(response.pieces().begin(), response.pieces().end());
  out.pieces.resize(out.ids.size());
  return out;
}

CallOutcome CallGenerate(const Connection& conn, kvstream::v1::Generation::Stub& stub,
                         const kvstream::v1::GenerateRequest& request, SteadyClock::time_point start) {
  CallOutcome out;
  grpc::ClientContext context;
  conn.Prepare(context);
  auto reader = stub.Generate(&context, request);
  kvstream::v1::GenerateResponse response;
  std::optional<SteadyClock::time_point> last_tokens;
  while (reader->Read(&response)) {
    if (response.has_result()) {
      out.result = response.result();
      continue;
    }
    if (!response.has_delta()) continue;
    const auto& delta = response.delta();
    const auto now = SteadyClock::now();
    const int n = delta.token_ids_size();
    if (n > 0) {
      if (!last_tokens) {
        out.ttft_ms = MsBetween(start, now);
      } else {
        // NOTE(client): a delta may carry several tokens (the server batches
        // what was ready); each gets an equal share of the gap.
        const double gap = MsBetween(*last_tokens, now) / n;
        for (int i = 0; i < n; ++i) out.itl_ms.push_back(gap);
      }
      last_tokens = now;
    }
    out.text += delta.text();
    out.token_ids.insert(out.token_ids.end(), delta.token_ids().begin(), delta.token_ids().end());
    for (const auto& lp : delta.logprobs()) out.logprobs.push_back(lp.logprob());
  }
  out.status = reader->Finish();
  out.e2e_ms = MsBetween(start, SteadyClock::now());
  if (out.status.ok() && !out.result) {
    out.status = grpc::Status(grpc::StatusCode::INTERNAL, "the stream ended without a GenerateResult");
  }
  return out;
}

absl::StatusOr<kvstream::v1::ModelInfo> FetchModelInfo(const Connection& conn) {
  grpc::ClientContext context;
  conn.Prepare(context);
  kvstream::v1::ModelInfo info;
  const grpc::Status status = kvstream::v1::Generation::NewStub(conn.channel())
                                  ->GetModelInfo(&context, kvstream::v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return ToAbsl(status, "GetModelInfo");
  return info;
}

}  // namespace kvstream::client
