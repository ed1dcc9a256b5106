#include "server/generation_service.h"

#include "server/generate_reactor.h"

namespace kvstream::server {

grpc::ServerWriteReactor<v1::GenerateResponse>* GenerationService::Generate(grpc::CallbackServerContext* ctx,
                                                                            const v1::GenerateRequest* request) {
  return new GenerateReactor(ctx, request, state_);  // deletes itself in OnDone
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* ctx,
                                                      const v1::TokenizeRequest* request,
                                                      v1::TokenizeResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  grpc::Status auth = state_.auth.Check(*ctx);
  reactor->Finish(auth.ok() ? HandleTokenize(state_, *request, response) : auth);
  return reactor;
}

grpc::ServerUnaryReactor* GenerationService::GetModelInfo(grpc::CallbackServerContext* ctx,
                                                          const v1::GetModelInfoRequest*, v1::ModelInfo* response) {
  auto* reactor = ctx->DefaultReactor();
  grpc::Status auth = state_.auth.Check(*ctx);
  reactor->Finish(auth.ok() ? HandleModelInfo(state_, response) : auth);
  return reactor;
}

}  // namespace kvstream::server
