// A c10::Error thrown inside a model step, as the status the request ends
// with: device memory exhausted mid-step is RESOURCE_EXHAUSTED (api.md: the
// server is full; the client may retry later), anything else INTERNAL.
#pragma once

#include <c10/util/Exception.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kvstream {

// `what` names the work that failed, e.g. "forward failed".
absl::Status StepErrorStatus(const c10::Error& e, absl::string_view what);

}  // namespace kvstream
