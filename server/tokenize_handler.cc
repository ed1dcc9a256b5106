#include "absl/strings/str_format.h"
#include "server/generation_service.h"
#include "server/translate.h"

namespace kvstream::server {

grpc::Status HandleTokenize(ServerState& state, const v1::TokenizeRequest& request, v1::TokenizeResponse* response) {
  Engine* engine = state.engine.load();
  if (engine == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "model is loading");
  if (request.text().size() > kMaxPromptBytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrFormat("text must be at most %d bytes (got %d)", kMaxPromptBytes, request.text().size()));
  }
  const Tokenizer& tok = engine->tokenizer();
  for (int32_t id : tok.Encode(request.text(), request.add_special_tokens())) {
    response->add_token_ids(id);
    response->add_pieces(tok.Decode({id}));  // valid UTF-8 (partial bytes become U+FFFD)
  }
  return grpc::Status::OK;
}

}  // namespace kvstream::server
