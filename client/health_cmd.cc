// kvstream health: grpc.health.v1.Health/Check. Debian's grpc++ ships no
// client stub for the health service, so the call goes through
// grpc::GenericStub with the two tiny messages encoded by hand:
//   HealthCheckRequest  { string service = 1; }
//   HealthCheckResponse { ServingStatus status = 1; }  // SERVING = 1
// Prints the status name; exit 0 iff SERVING.
#include <cstdio>
#include <future>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "client/channel.h"
#include "client/commands.h"
#include "client/flags.h"
#include "client/output.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"

namespace kvstream::client {
namespace {

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";

std::string EncodeRequest(const std::string& service) {
  std::string bytes;
  if (service.empty()) return bytes;  // proto3: a default field is not written
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream out(&stream);
  out.WriteTag((1 << 3) | 2);  // field 1, length-delimited
  out.WriteVarint32(static_cast<uint32_t>(service.size()));
  out.WriteString(service);
  return bytes;
}

// The status field of a HealthCheckResponse (0 = UNKNOWN when absent).
absl::StatusOr<int> DecodeStatus(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InternalError("health: unreadable response");
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) return absl::InternalError("health: malformed HealthCheckResponse");
  int status = 0;
  for (int i = 0; i < fields.field_count(); ++i) {
    const auto& f = fields.field(i);
    if (f.number() == 1 && f.type() == google::protobuf::UnknownField::TYPE_VARINT) {
      status = static_cast<int>(f.varint());  // last one wins, as in a parser
    }
  }
  return status;
}

const char* ServingStatusName(int status) {
  switch (status) {
    case 0:
      return "UNKNOWN";
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    case 3:
      return "SERVICE_UNKNOWN";
    default:
      return "UNRECOGNIZED";
  }
}

}  // namespace

int RunHealth(const ParsedArgs& args) {
  auto conn = Connection::Open(ConnectionOptionsFromFlags());
  if (!conn.ok()) return ReportUsageError(conn.status());
  const std::string request_bytes = EncodeRequest(absl::GetFlag(FLAGS_service));
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;

  grpc::GenericStub stub(conn->channel());
  grpc::ClientContext context;
  conn->Prepare(context);
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, kCheckMethod, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return ReportRpcError(status);

  auto serving = DecodeStatus(response);
  if (!serving.ok()) return ReportFailure(serving.status());
  std::printf("%s\n", ServingStatusName(*serving));
  return *serving == 1 ? kExitOk : kExitFailed;
}

}  // namespace kvstream::client
