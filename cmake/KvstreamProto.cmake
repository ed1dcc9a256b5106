# proto/kvstream/v1/kvstream.proto -> C++ messages and gRPC stubs in the build dir.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_program(KV_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
set(KV_PROTO_OUT ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${KV_PROTO_OUT})

# kv_proto_library(<target> <path under proto/ without .proto>...)
function(kv_proto_library target)
  set(gen)
  foreach(p ${ARGN})
    set(src ${CMAKE_SOURCE_DIR}/proto/${p}.proto)
    set(out ${KV_PROTO_OUT}/${p}.pb.cc ${KV_PROTO_OUT}/${p}.pb.h ${KV_PROTO_OUT}/${p}.grpc.pb.cc
            ${KV_PROTO_OUT}/${p}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${out}
      COMMAND protobuf::protoc --proto_path=${CMAKE_SOURCE_DIR}/proto --cpp_out=${KV_PROTO_OUT}
              --grpc_out=${KV_PROTO_OUT} --plugin=protoc-gen-grpc=${KV_GRPC_CPP_PLUGIN} ${src}
      DEPENDS ${src}
      COMMENT "protoc ${p}.proto")
    list(APPEND gen ${out})
  endforeach()
  add_library(${target} STATIC ${gen})
  target_include_directories(${target} SYSTEM PUBLIC ${KV_PROTO_OUT})
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf gRPC::grpc++)
  target_compile_options(${target} PRIVATE -Wno-unused-parameter)
endfunction()

# The public API.
kv_proto_library(kvstream_proto kvstream/v1/kvstream)
# Client-side stubs of gRPC's standard health and reflection services (the
# server uses gRPC's own implementations).
kv_proto_library(kvstream_std_proto grpc/health/v1/health grpc/reflection/v1alpha/reflection)
