// One reactor per Generate call (gRPC callback API), keeping exactly one write
// in flight. Engine-thread events arrive through a StreamLink that outlives
// the reactor, so a token posted after the client left is simply dropped.
#pragma once

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "engine/scheduler/scheduler.h"
#include "kvstream/v1/kvstream.pb.h"
#include "server/server_state.h"

namespace kvstream::server {

class GenerateReactor;

// Shared between the reactor and the scheduler's observer.
class StreamLink {
 public:
  explicit StreamLink(GenerateReactor* r) : reactor_(r) {}
  // Queues a response; starts a write if none is in flight.
  void Post(v1::GenerateResponse response);
  // Queues the end of the stream; Finish() runs once the queue is written.
  void PostFinish(grpc::Status status);
  // Called from OnWriteDone: writes the next response or finishes. After a
  // failed write (client gone) queued responses are dropped.
  void WriteDone(bool ok);
  // The reactor is gone (OnDone): later posts are dropped.
  void Detach();

 private:
  void PumpLocked();

  // Deltas beyond this many unsent responses merge into the last one, so a
  // slow reader costs memory proportional to its text, not to its tokens.
  static constexpr size_t kMaxPending = 32;

  std::mutex mu_;
  GenerateReactor* reactor_;
  std::deque<v1::GenerateResponse> pending_;
  v1::GenerateResponse in_flight_;  // must live until OnWriteDone
  bool writing_ = false;
  std::optional<grpc::Status> final_;
  bool finish_called_ = false;
};

class GenerateReactor final : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request, ServerState& state);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  friend class StreamLink;
  ServerState& state_;
  std::shared_ptr<StreamLink> link_;
  std::shared_ptr<std::atomic<bool>> cancelled_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace kvstream::server
