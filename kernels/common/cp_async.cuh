// Thin wrappers over the sm_80+ asynchronous global->shared copy (cp.async):
// a 16-byte copy that bypasses L1 and the register file, grouped into commit
// groups the issuing thread waits on. Completion is per thread: a thread that
// reads back only the bytes it copied itself needs no barrier after the wait.
#pragma once

#include <cstdint>

namespace kvstream {

// Copies 16 bytes gmem -> smem, or writes 16 zero bytes (reading nothing) when
// !valid; gmem must still be a mapped address (pass any valid base then).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes)
               : "memory");
}

// N = 4 or 8 bytes (cached at all levels: the .cg form takes 16 only); N =
// 16 is CpAsync16. gmem and smem N-byte aligned; !valid writes N zero bytes.
template <int N>
__device__ __forceinline__ void CpAsync(void* smem, const void* gmem, bool valid) {
  static_assert(N == 4 || N == 8 || N == 16, "cp.async copies 4, 8 or 16 bytes");
  if constexpr (N == 16) {
    CpAsync16(smem, gmem, valid);
  } else {
    const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    const int src_bytes = valid ? N : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(gmem), "n"(N), "r"(src_bytes)
                 : "memory");
  }
}

__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's most recent commit groups are pending.
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace kvstream
