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
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
