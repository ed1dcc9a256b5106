// A/B switches read from the environment (KVSTREAM_GEMV, KVSTREAM_DENSE_FUSED,
// ...): on unless the variable is "0". Benches flip them to time a fused path
// against the one it replaced in the same build.
#pragma once

#include <cstdlib>
#include <cstring>

namespace kvstream {

inline bool EnvSwitchOn(const char* name) {
  const char* env = std::getenv(name);
  return env == nullptr || std::strcmp(env, "0") != 0;
}

}  // namespace kvstream
