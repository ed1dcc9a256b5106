// Programmatic dependent launch (sm_90+). A kernel launched with the
// cudaLaunchAttributeProgrammaticStreamSerialization attribute may start
// while the previous kernel in the stream is still running, once every block
// of that kernel has called PdlLaunchDependents() (or exited). It must call
// PdlWaitForPrerequisite() before it reads anything the previous kernel
// writes or writes anything it may still read; work before that point may
// only touch memory nobody else writes (weights). At decode batch sizes a
// step is ~10 short kernels per layer and the gaps between them are a large
// part of the step: this lets the GEMV stream its first weight bytes while
// the norm or attention before it drains.
//
// Both are no-ops on older architectures and for kernels launched without
// the attribute.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace kvstream {

__device__ __forceinline__ void PdlWaitForPrerequisite() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void PdlLaunchDependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Launches `kernel` as a programmatic dependent of the previous work in
// `stream` (captured into CUDA graphs as a programmatic edge).
template <class... KArgs, class... Args>
cudaError_t LaunchPdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace kvstream
