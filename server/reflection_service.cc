#include "server/reflection_service.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"

namespace kvstream::server {
namespace {

namespace rv1 = grpc::reflection::v1alpha;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

// The file, then every file it imports (transitively), each once: a client
// can build the schema from one response without further round trips.
void AddFileWithDeps(const FileDescriptor* file, std::set<std::string>* seen, rv1::FileDescriptorResponse* out) {
  if (file == nullptr || !seen->insert(file->name()).second) return;
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  proto.SerializeToString(out->add_file_descriptor_proto());
  for (int i = 0; i < file->dependency_count(); ++i) AddFileWithDeps(file->dependency(i), seen, out);
}

void SetError(rv1::ServerReflectionResponse* r, grpc::StatusCode code, std::string message) {
  rv1::ErrorResponse* e = r->mutable_error_response();
  e->set_error_code(static_cast<int32_t>(code));
  e->set_error_message(std::move(message));
}

class ReflectionReactor final
    : public grpc::ServerBidiReactor<rv1::ServerReflectionRequest, rv1::ServerReflectionResponse> {
 public:
  ReflectionReactor(const ReflectionService& service, grpc::Status auth) : service_(service) {
    if (!auth.ok()) {
      Finish(auth);
      return;
    }
    StartRead(&request_);
  }

  // One answer per request, in order: at most one read or one write is in
  // flight, never both, so the members need no lock.
  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side (or left): the stream is over
      Finish(grpc::Status::OK);
      return;
    }
    response_ = service_.Answer(request_);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client gone"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  const ReflectionService& service_;
  rv1::ServerReflectionRequest request_;
  rv1::ServerReflectionResponse response_;
};

}  // namespace

ReflectionService::ReflectionService(std::vector<std::string> services, const TokenAuth& auth)
    : services_(std::move(services)), auth_(auth) {
  // Links the health messages into the generated pool, so health can be
  // described too (gRPC's own health service carries no descriptors).
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
}

grpc::ServerBidiReactor<rv1::ServerReflectionRequest, rv1::ServerReflectionResponse>*
ReflectionService::ServerReflectionInfo(grpc::CallbackServerContext* ctx) {
  return new ReflectionReactor(*this, auth_.Check(*ctx));  // deletes itself in OnDone
}

rv1::ServerReflectionResponse ReflectionService::Answer(const rv1::ServerReflectionRequest& req) const {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  rv1::ServerReflectionResponse r;
  r.set_valid_host(req.host());
  *r.mutable_original_request() = req;
  std::set<std::string> seen;
  switch (req.message_request_case()) {
    case rv1::ServerReflectionRequest::kListServices:
      for (const std::string& name : services_) r.mutable_list_services_response()->add_service()->set_name(name);
      break;
    case rv1::ServerReflectionRequest::kFileByFilename: {
      const FileDescriptor* f = pool->FindFileByName(req.file_by_filename());
      if (f == nullptr) {
        SetError(&r, grpc::StatusCode::NOT_FOUND, absl::StrCat("file not found: ", req.file_by_filename()));
      } else {
        AddFileWithDeps(f, &seen, r.mutable_file_descriptor_response());
      }
      break;
    }
    case rv1::ServerReflectionRequest::kFileContainingSymbol: {
      const FileDescriptor* f = pool->FindFileContainingSymbol(req.file_containing_symbol());
      if (f == nullptr) {
        SetError(&r, grpc::StatusCode::NOT_FOUND, absl::StrCat("symbol not found: ", req.file_containing_symbol()));
      } else {
        AddFileWithDeps(f, &seen, r.mutable_file_descriptor_response());
      }
      break;
    }
    case rv1::ServerReflectionRequest::kFileContainingExtension: {
      const auto& ext = req.file_containing_extension();
      const auto* type = pool->FindMessageTypeByName(ext.containing_type());
      const auto* field = type == nullptr ? nullptr : pool->FindExtensionByNumber(type, ext.extension_number());
      if (field == nullptr) {
        SetError(&r, grpc::StatusCode::NOT_FOUND,
                 absl::StrCat("extension not found: ", ext.containing_type(), " ", ext.extension_number()));
      } else {
        AddFileWithDeps(field->file(), &seen, r.mutable_file_descriptor_response());
      }
      break;
    }
    case rv1::ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const auto* type = pool->FindMessageTypeByName(req.all_extension_numbers_of_type());
      if (type == nullptr) {
        SetError(&r, grpc::StatusCode::NOT_FOUND, absl::StrCat("type not found: ", req.all_extension_numbers_of_type()));
        break;
      }
      std::vector<const google::protobuf::FieldDescriptor*> exts;
      pool->FindAllExtensions(type, &exts);
      rv1::ExtensionNumberResponse* out = r.mutable_all_extension_numbers_response();
      out->set_base_type_name(type->full_name());
      for (const auto* e : exts) out->add_extension_number(e->number());
      break;
    }
    default:
      SetError(&r, grpc::StatusCode::INVALID_ARGUMENT, "message_request is not set");
      break;
  }
  return r;
}

}  // namespace kvstream::server
