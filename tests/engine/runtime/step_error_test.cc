// A step's c10::Error as the request's status (engine/runtime/step_error.h):
// an allocation the device cannot satisfy (the CPU allocator's error here;
// CUDA's c10::OutOfMemoryError in engine_cuda_test.cc) is RESOURCE_EXHAUSTED
// naming what failed; any other error stays INTERNAL.
#include "engine/runtime/step_error.h"

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <functional>
#include <string>

namespace kvstream {
namespace {

absl::Status StatusOfThrow(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return StepErrorStatus(e, "forward failed");
  }
  return absl::OkStatus();
}

TEST(StepError, AnAllocationTooLargeForTheDeviceIsResourceExhausted) {
  // 2^50 bytes: more than any address space gives, so the allocator refuses at once.
  const absl::Status s = StatusOfThrow([] { at::empty({int64_t{1} << 50}, at::kByte); });
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(std::string(s.message()).find("forward failed: device memory exhausted"), std::string::npos) << s;
}

TEST(StepError, CudaOutOfMemoryIsResourceExhausted) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  // 2^50 bytes on the GPU: the caching allocator throws c10::OutOfMemoryError.
  const absl::Status s =
      StatusOfThrow([] { at::empty({int64_t{1} << 50}, at::TensorOptions(at::kByte).device(at::kCUDA)); });
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(std::string(s.message()).find("out of memory"), std::string::npos) << s;
}

TEST(StepError, OtherErrorsStayInternalWithTheirMessage) {
  const absl::Status s = StatusOfThrow([] { at::matmul(at::ones({2, 3}), at::ones({4, 5})); });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
  EXPECT_EQ(std::string(s.message()).rfind("forward failed: ", 0), 0u) << s;
  EXPECT_EQ(std::string(s.message()).find("device memory"), std::string::npos) << s;
}

}  // namespace
}  // namespace kvstream
