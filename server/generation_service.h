// kvstream.v1.Generation on the gRPC callback API. It only constructs
// reactors; each RPC's logic lives in its own file.
#pragma once

#include <grpcpp/grpcpp.h>

#include "kvstream/v1/kvstream.grpc.pb.h"
#include "server/server_state.h"

namespace kvstream::server {

class GenerationService final : public v1::Generation::CallbackService {
 public:
  explicit GenerationService(ServerState& state) : state_(state) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                           const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx, const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  ServerState& state_;
};

// Handlers (tokenize_handler.cc, model_info_handler.cc).
grpc::Status HandleTokenize(ServerState& state, const v1::TokenizeRequest& request, v1::TokenizeResponse* response);
grpc::Status HandleModelInfo(ServerState& state, v1::ModelInfo* response);

}  // namespace kvstream::server
