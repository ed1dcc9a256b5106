#include "engine/runtime/step_error.h"

#include <string_view>

#include "absl/strings/str_cat.h"

namespace kvstream {
namespace {

// CUDA's caching allocator throws c10::OutOfMemoryError; the CPU allocator
// a plain c10::Error whose message says so (alloc_cpu.cpp: "DefaultCPUAllocator:
// can't allocate memory" / "not enough memory").
bool IsOutOfMemory(const c10::Error& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  const std::string_view m = e.msg();
  return m.find("DefaultCPUAllocator") != std::string_view::npos &&
         (m.find("can't allocate memory") != std::string_view::npos ||
          m.find("not enough memory") != std::string_view::npos);
}

}  // namespace

absl::Status StepErrorStatus(const c10::Error& e, absl::string_view what) {
  if (IsOutOfMemory(e)) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": device memory exhausted (", e.what_without_backtrace(), ")"));
  }
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

}  // namespace kvstream
