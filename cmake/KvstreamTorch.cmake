# libtorch from the venv's torch wheel. The CPU build links libtorch_cpu and
# libc10 directly (the PyPI wheel is a CUDA build whose TorchConfig insists on
# a matching CUDA toolkit); KVSTREAM_CUDA=ON uses TorchConfig (GPU machine).
if(NOT KVSTREAM_TORCH_DIR)
  if(NOT KVSTREAM_PYTHON)
    message(FATAL_ERROR "No torch: run scripts/setup.sh, or pass -DKVSTREAM_TORCH_DIR=.../site-packages/torch")
  endif()
  execute_process(COMMAND ${KVSTREAM_PYTHON} -c "import os,importlib.util as u;print(os.path.dirname(u.find_spec('torch').origin))"
                  OUTPUT_VARIABLE _torch_dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "torch not importable from ${KVSTREAM_PYTHON}")
  endif()
  set(KVSTREAM_TORCH_DIR ${_torch_dir} CACHE PATH "" FORCE)
endif()
message(STATUS "kvstream: torch at ${KVSTREAM_TORCH_DIR}")

add_library(kvstream_torch INTERFACE)
if(KVSTREAM_ENABLE_CUDA_TORCH)
  list(APPEND CMAKE_PREFIX_PATH ${KVSTREAM_TORCH_DIR}/share/cmake)
  find_package(Torch REQUIRED)
  target_link_libraries(kvstream_torch INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(kvstream_torch INTERFACE KVSTREAM_HAVE_CUDA_TORCH=1)
else()
  # NOTE(kvstream): torch/include carries its own (older) google/protobuf
  # headers; -idirafter puts it after /usr/include so gRPC code gets Debian's
  # protobuf while ATen/c10 (absent from /usr/include) still resolve.
  target_compile_options(kvstream_torch INTERFACE "SHELL:-idirafter ${KVSTREAM_TORCH_DIR}/include")
  target_link_libraries(kvstream_torch INTERFACE ${KVSTREAM_TORCH_DIR}/lib/libtorch_cpu.so
                        ${KVSTREAM_TORCH_DIR}/lib/libc10.so)
endif()
target_link_options(kvstream_torch INTERFACE "-Wl,-rpath,${KVSTREAM_TORCH_DIR}/lib")
