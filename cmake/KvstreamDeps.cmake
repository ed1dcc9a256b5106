# Third-party dependencies from Debian (see architecture.md "Dependencies").
find_package(absl REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(spdlog REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)

add_library(kvstream_absl INTERFACE)
target_link_libraries(kvstream_absl INTERFACE absl::status absl::statusor absl::strings
                      absl::str_format absl::span absl::flat_hash_map absl::time)
add_library(kvstream_re2 INTERFACE)
target_link_libraries(kvstream_re2 INTERFACE PkgConfig::RE2)

if(NOT KVSTREAM_PYTHON)
  if(DEFINED ENV{KVSTREAM_CACHE})
    set(_kv_cache $ENV{KVSTREAM_CACHE})
  else()
    set(_kv_cache $ENV{HOME}/.cache/kvstream)
  endif()
  if(EXISTS ${_kv_cache}/venv/bin/python)
    set(KVSTREAM_PYTHON ${_kv_cache}/venv/bin/python CACHE FILEPATH "" FORCE)
  endif()
endif()
# cpp-httplib (Debian's shared build). Not through pkg-config: its .pc lists
# brotli .pc files that machines without brotli -dev packages lack; the
# defines below are the ones that .pc gives (they change the class layout).
find_path(KV_HTTPLIB_INCLUDE httplib.h REQUIRED)
find_library(KV_HTTPLIB_LIB cpp-httplib REQUIRED)
add_library(kvstream_httplib INTERFACE)
target_include_directories(kvstream_httplib INTERFACE ${KV_HTTPLIB_INCLUDE})
target_link_libraries(kvstream_httplib INTERFACE ${KV_HTTPLIB_LIB})
target_compile_definitions(kvstream_httplib INTERFACE CPPHTTPLIB_OPENSSL_SUPPORT CPPHTTPLIB_ZLIB_SUPPORT
                           CPPHTTPLIB_BROTLI_SUPPORT)
