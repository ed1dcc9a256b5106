# One test executable per tests/**/*_test.cc, named after its path
# (tests/engine/model/loader/gguf_reader_test.cc -> engine_model_loader_gguf_reader_test).
# Folder decides what it links: readers and tokenizer tests need no torch.
find_package(GTest REQUIRED)
include(GoogleTest)
file(GLOB_RECURSE KV_TEST_SRC CONFIGURE_DEPENDS tests/*_test.cc)
foreach(src ${KV_TEST_SRC})
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/tests ${src})
  string(REGEX REPLACE "\\.cc$" "" name ${rel})
  string(REPLACE "/" "_" name ${name})
  if(rel MATCHES "^engine/model/loader/" OR rel MATCHES "^engine/tokenizer/")
    set(deps kvstream_model_io)  # includes the tokenizer
  elseif(rel MATCHES "^kernels/.*_cuda_test\\.cc$")
    # GPU tests: built wherever nvcc is (they GTEST_SKIP without a device).
    if(NOT TARGET kvstream_kernels_cuda)
      continue()
    endif()
    set(deps kvstream_kernels_cuda CUDA::cudart)
  elseif(rel MATCHES "^kernels/")
    set(deps kvstream_kernels)
  elseif(rel MATCHES "^client/")
    if(NOT TARGET kvstream_client)
      continue()
    endif()
    set(deps kvstream_client)
  elseif(rel MATCHES "^server/" AND KVSTREAM_WITH_TORCH)
    set(deps kvstream_server kvstream_std_proto)
  elseif(KVSTREAM_WITH_TORCH)
    set(deps kvstream_engine)
    # The LASER-KV passkey diagnostic builds its prompts with the eval's own case builder.
    if(rel STREQUAL "engine/kv/laser_kv/laser_kv_passkey_diag_test.cc" AND TARGET kvstream_client)
      list(APPEND deps kvstream_client)
    endif()
  else()
    continue()
  endif()
  set(extra)
  if(rel MATCHES "^server/")
    set(extra tests/server/server_harness.cc)
  endif()
  add_executable(${name} ${src} ${extra} tests/test_paths.h)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${deps} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE
    KVSTREAM_SOURCE_DIR="${CMAKE_SOURCE_DIR}" KVSTREAM_PYTHON="${KVSTREAM_PYTHON}"
    KVSTREAM_BINARY_DIR="${CMAKE_BINARY_DIR}")
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "${name}."
                       WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} PROPERTIES TIMEOUT 1200)
endforeach()

# Python checks (tests/**/*_test.py) with the venv's python (PyYAML comes with
# transformers): one ctest entry per file, named like the C++ ones. Only in
# the full build (the deploy test serves from its kvstream-server), so the
# ASan tree does not run them twice.
file(GLOB_RECURSE KV_PY_TEST_SRC CONFIGURE_DEPENDS tests/*_test.py)
if(NOT KVSTREAM_WITH_TORCH)
  set(KV_PY_TEST_SRC)
endif()
if(KVSTREAM_PYTHON)
  set(_kv_py ${KVSTREAM_PYTHON})
else()
  find_program(_kv_py python3 REQUIRED)
endif()
foreach(src ${KV_PY_TEST_SRC})
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/tests ${src})
  string(REGEX REPLACE "\\.py$" "" name ${rel})
  string(REPLACE "/" "_" name ${name})
  add_test(NAME ${name} COMMAND ${_kv_py} ${src} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES TIMEOUT 600 ENVIRONMENT "KVSTREAM_BINARY_DIR=${CMAKE_BINARY_DIR}")
endforeach()
