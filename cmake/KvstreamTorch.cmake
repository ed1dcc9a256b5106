# libtorch from the venv's torch wheel. The CPU build links libtorch_cpu and
# libc10 directly (the PyPI wheel is a CUDA build whose TorchConfig insists on
# a matching CUDA toolkit); KVSTREAM_CUDA=ON adds libtorch_cuda (GPU machine).
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
# NOTE(kvstream): torch/include carries its own (older) google/protobuf
# headers; -idirafter puts it after /usr/include so gRPC code gets the
# system protobuf while ATen/c10 (absent from /usr/include) still resolve.
# TorchConfig would add it as a normal include dir, so it is not used.
target_compile_options(kvstream_torch INTERFACE "SHELL:-idirafter ${KVSTREAM_TORCH_DIR}/include")
set(_tl ${KVSTREAM_TORCH_DIR}/lib)
if(KVSTREAM_ENABLE_CUDA_TORCH)
  find_package(CUDAToolkit REQUIRED)
  # libtorch_cuda registers the CUDA backend from static initialisers: keep it
  # linked even though no symbol of it is referenced directly.
  target_link_libraries(kvstream_torch INTERFACE ${_tl}/libtorch_cpu.so ${_tl}/libc10.so ${_tl}/libc10_cuda.so
                        "-Wl,--no-as-needed,${_tl}/libtorch_cuda.so,--as-needed" CUDA::cudart
                        CUDA::cublasLt)  # engine/model/tuned_linear.cc
  target_compile_definitions(kvstream_torch INTERFACE KVSTREAM_HAVE_CUDA_TORCH=1)
  # NCCL for tensor parallelism across GPUs (engine/parallel/nccl_group.cc):
  # the wheel torch itself depends on (nvidia-nccl-cu13, beside torch in
  # site-packages), else the CUDA toolkit's copy.
  find_path(KVSTREAM_NCCL_INCLUDE nccl.h
            PATHS ${KVSTREAM_TORCH_DIR}/../nvidia/nccl/include ${CUDAToolkit_INCLUDE_DIRS} NO_DEFAULT_PATH)
  find_library(KVSTREAM_NCCL_LIB NAMES nccl libnccl.so.2
               PATHS ${KVSTREAM_TORCH_DIR}/../nvidia/nccl/lib ${CUDAToolkit_LIBRARY_DIR} NO_DEFAULT_PATH)
  if(KVSTREAM_NCCL_INCLUDE AND KVSTREAM_NCCL_LIB)
    message(STATUS "kvstream: NCCL ${KVSTREAM_NCCL_LIB} (tensor parallelism across GPUs)")
    target_include_directories(kvstream_torch SYSTEM INTERFACE ${KVSTREAM_NCCL_INCLUDE})
    target_link_libraries(kvstream_torch INTERFACE ${KVSTREAM_NCCL_LIB})
    target_compile_definitions(kvstream_torch INTERFACE KVSTREAM_HAVE_NCCL=1)
  else()
    message(STATUS "kvstream: no NCCL found: --tensor-parallel > 1 on CUDA is UNIMPLEMENTED in this build")
  endif()
else()
  target_link_libraries(kvstream_torch INTERFACE ${_tl}/libtorch_cpu.so ${_tl}/libc10.so)
endif()
target_link_options(kvstream_torch INTERFACE "-Wl,-rpath,${_tl}")

# ATen's at::parallel_for is inline in its headers: it spreads a loop over
# the intra-op pool only where the caller is compiled with OpenMP (the
# wheel's backend) and otherwise runs the whole range on the calling thread,
# whatever --threads says. The engine's two callers (the packed decode matmul
# and the dense CPU decode attention) are compiled with it; a new caller
# belongs in this list. The wheel's libgomp.so.1, found first through the
# rpath above, then serves ATen and them alike: one runtime, one pool.
set_source_files_properties(${CMAKE_SOURCE_DIR}/engine/model/packed_matrix.cc
                            ${CMAKE_SOURCE_DIR}/engine/kv/dense/dense_cache.cc
                            PROPERTIES COMPILE_OPTIONS -fopenmp)
target_link_options(kvstream_torch INTERFACE -fopenmp)
